"""Start-up of the workflow's jobs, and its share of a finished DAG's time.

What a job spends before its training loop runs: the interpreter, its imports (torch, the
engine), the dataset, the model and one training step. Measured in fresh subprocesses, as
Snakemake starts each job, side by side in alternating rounds:

* ``train, nothing cached``: the embedded default's first Table-2 run generating its data in the
  job (``$GMSOP_CACHE_DIR`` unset);
* ``train, as most jobs run``: data mapped from the cache ``prepare_data`` wrote;
* ``aggregation``: the imports of a table/figure/scorecard job (torch included, through the plan's
  rows).

Each line says whether the job loaded torch._dynamo (torch.optim and
``torch.use_deterministic_algorithms`` load it: about 1.3 s of a job on the CPU).

With ``--dag DIR`` (a finished workflow's folder: ``results/benchmarks`` and ``results/runs``
under it), start-up's share of the DAG is measured in place: for each training job, the seconds
Snakemake measured for it minus its epochs' seconds (``metrics.json``: everything outside the
epochs, start-up first); each benchmark job counts the ``as most jobs run`` start-up above.

    python benchmarks/bench_job_startup.py --rounds 3
    python benchmarks/bench_job_startup.py --dag .
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
import sys, yaml, torch
torch.set_num_threads(1)
from gmsop.experiments import make_plan
from gmsop.pipeline import train_config
from gmsop.engine.loop import train_one_epoch
from gmsop.engine.trainer import build_run
cfg = yaml.safe_load(open({config!r}))
plan = make_plan(cfg)
row = plan.experiments["table2"].rows[0]
spec = plan.runs[row.run]
run = build_run(train_config(spec, plan.datasets[spec["dataset"]], 0, {out!r}, {ckpt!r}))
batch = next(iter(run.data.train_batches(1)))
train_one_epoch(run.forward, [batch], run.optimizer, run.runtime, epoch=1)
print("compiler loaded" if "torch._dynamo" in sys.modules else "compiler not loaded")
"""
AGGREGATION = (
    "import gmsop.pipeline, gmsop.experiments, gmsop.aggregate.tables, gmsop.aggregate.figures, "
    "gmsop.aggregate.scorecard"
)


def _time_process(code: str, env: dict) -> tuple[float, str]:
    """(seconds, last line printed) of one fresh interpreter running ``code``."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    lines = done.stdout.strip().splitlines()
    return time.perf_counter() - t0, lines[-1] if lines else ""


def _seconds(tsv: Path) -> float:
    with tsv.open() as handle:
        return sum(float(r["s"]) for r in csv.DictReader(handle, delimiter="\t"))


def dag_startup(folder: Path, bench_startup: float) -> dict:
    """Start-up measured in place in a finished workflow ``folder`` (see the module docstring)."""
    import json

    bench_dir = folder / "results" / "benchmarks"
    outside = []
    for tsv in sorted((bench_dir / "train").rglob("*.tsv")):
        run, seed = tsv.parent.name, tsv.stem
        metrics = json.loads((folder / "results" / "runs" / run / seed / "metrics.json").read_text())
        outside.append(_seconds(tsv) - sum(e["epoch_time_s"] for e in metrics["epochs"]))
    bench = list((bench_dir / "bench").rglob("*.tsv"))
    total = sum(_seconds(t) for t in bench_dir.rglob("*.tsv"))  # every job Snakemake timed
    startup = sum(outside) + len(bench) * bench_startup
    return {
        "train_jobs": len(outside),
        "bench_jobs": len(bench),
        "job_seconds": total,
        "outside_epochs_median": statistics.median(outside) if outside else 0.0,
        "startup": startup,
        "share": startup / total if total else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(ROOT / "config.yaml"), help="workflow config (config.yaml)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    p.add_argument(
        "--dag",
        type=Path,
        default=None,
        help="a finished workflow's folder (with results/benchmarks and results/runs)",
    )
    args = p.parse_args(argv)
    if args.dag is not None and not args.dag.is_dir():
        p.error(f"--dag {args.dag}: not a folder")

    with tempfile.TemporaryDirectory(prefix="gmsop-startup-") as tmp:
        base = {k: v for k, v in os.environ.items() if k != "GMSOP_CACHE_DIR"}
        base["OMP_NUM_THREADS"] = "1"
        code = BUILD_RUN.format(config=args.config, out=f"{tmp}/m.json", ckpt=f"{tmp}/ckpt")
        cached = {**base, "GMSOP_CACHE_DIR": f"{tmp}/cache"}
        kinds = {
            "train, nothing cached": (code, base),
            "train, as most jobs run": (code, cached),
            "aggregation": (AGGREGATION, base),
        }
        _time_process(code, cached)  # fills the cache, as prepare_data does
        times: dict[str, list[float]] = {k: [] for k in kinds}
        said: dict[str, str] = {}
        for r in range(args.rounds):
            for name in list(kinds) if r % 2 == 0 else list(kinds)[::-1]:
                seconds, said[name] = _time_process(*kinds[name])
                times[name].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        note = f"; {said[k]}" if said[k] else ""
        print(f"{k:<30} {med[k]:6.2f} s  (rounds: {', '.join(f'{t:.2f}' for t in v)}{note})")
    print(
        "as most jobs run / nothing cached: "
        f"{med['train, as most jobs run'] / med['train, nothing cached']:.2f}"
    )
    if args.dag is not None:
        d = dag_startup(args.dag, med["train, as most jobs run"])
        print(
            f"DAG: {d['train_jobs']} training jobs (median {d['outside_epochs_median']:.2f} s outside their "
            f"epochs) + {d['bench_jobs']} benchmark jobs x {med['train, as most jobs run']:.2f} s = "
            f"{d['startup']:.0f} s of "
            f"{d['job_seconds']:.0f} s of job time: start-up is {100 * d['share']:.1f}% of it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
