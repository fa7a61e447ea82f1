"""Start-up of the workflow's jobs, and its share of a finished DAG's time.

What a job spends before its first training step: the interpreter, its imports (torch, the
engine), the dataset and the model (with its FLOP count). Measured in fresh subprocesses, as
Snakemake starts each job, side by side in alternating rounds:

* ``train (data generated)``: ``gmsop.engine.trainer.build_run`` on the embedded default's
  first Table-2 run, generating its ``synthetic`` data in the job, as every job did before
  2026-12-02;
* ``train (data cached)``: the same with ``$GMSOP_CACHE_DIR`` set, as the workflow now runs it:
  the data is mapped from the cache that ``prepare_data`` wrote once;
* ``aggregation``: the imports of a table/figure/scorecard job (no torch).

With ``--dag DIR`` (a finished workflow's ``results/benchmarks``), the start-up of every train
and bench job (the cached figure) is set against the seconds Snakemake measured for those jobs
(each is one thread, so its seconds are CPU seconds on an idle machine), giving start-up's share.

    python benchmarks/bench_job_startup.py --rounds 3
    python benchmarks/bench_job_startup.py --dag results/benchmarks
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD_RUN = """
import yaml, torch
torch.set_num_threads(1)
from gmsop.experiments import make_plan
from gmsop.pipeline import train_config
from gmsop.engine.trainer import build_run
cfg = yaml.safe_load(open({config!r}))
plan = make_plan(cfg)
row = plan.experiments["table2"].rows[0]
spec = plan.runs[row.run]
build_run(train_config(spec, plan.datasets[spec["dataset"]], 0, {out!r}, {ckpt!r}))
"""
AGGREGATION = "import gmsop.pipeline, gmsop.experiments, gmsop.aggregate.tables, gmsop.aggregate.figures, gmsop.aggregate.scorecard"


def _time_process(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def dag_seconds(folder: Path) -> tuple[int, float]:
    """(jobs, summed seconds) over Snakemake's benchmark files under ``folder`` (``s`` column)."""
    files = sorted(folder.rglob("*.tsv"))
    total = 0.0
    for f in files:
        with f.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        total += sum(float(r["s"]) for r in rows)
    return len(files), total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "config.yaml"), help="workflow config (config.yaml)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    p.add_argument("--dag", type=Path, default=None, help="a finished workflow's results/benchmarks folder")
    args = p.parse_args(argv)
    if args.dag is not None and not args.dag.is_dir():
        p.error(f"--dag {args.dag}: not a folder")

    with tempfile.TemporaryDirectory(prefix="gmsop-startup-") as tmp:
        base = {k: v for k, v in os.environ.items() if k != "GMSOP_CACHE_DIR"}
        base["OMP_NUM_THREADS"] = "1"
        code = BUILD_RUN.format(config=args.config, out=f"{tmp}/m.json", ckpt=f"{tmp}/ckpt")
        kinds = {
            "train (data generated)": (code, base),
            "train (data cached)": (code, {**base, "GMSOP_CACHE_DIR": f"{tmp}/cache"}),
            "aggregation": (AGGREGATION, base),
        }
        _time_process(code, kinds["train (data cached)"][1])  # fills the cache, as prepare_data does
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for name in (list(kinds) if r % 2 == 0 else list(kinds)[::-1]):
                times[name].append(_time_process(*kinds[name]))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:<24} {med[k]:6.2f} s  (rounds: {', '.join(f'{t:.2f}' for t in v)})")
    print(f"cached / generated start-up of a training job: {med['train (data cached)'] / med['train (data generated)']:.2f}")
    if args.dag is not None:
        jobs, seconds = dag_seconds(args.dag)
        startup = jobs * med["train (data cached)"]
        print(f"DAG: {jobs} train/bench jobs, {seconds:.0f} s of job time; start-up {startup:.0f} s "
              f"({jobs} x {med['train (data cached)']:.2f} s) = {100 * startup / seconds:.1f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
