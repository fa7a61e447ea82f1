"""Measure the training/inference throughput of every network one experiment shows, one after
the other, each at its dataset's input shape: results/bench/{experiment}/{bench}.json."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from pathlib import Path  # noqa: E402

from gmsop.formats import BENCH_SUFFIX  # noqa: E402
from gmsop.pipeline import identity, run_bench, start_job  # noqa: E402

DEVICE = start_job(snakemake.params.device, snakemake.resources.gpu, snakemake.params.plugins)  # noqa: F821
folder = Path(snakemake.output[0])  # noqa: F821
folder.mkdir(parents=True, exist_ok=True)
datasets = {Path(p).stem: p for p in snakemake.input}  # noqa: F821
benches = snakemake.params.benches  # noqa: F821
for i, (bench, spec) in enumerate(benches.items(), start=1):
    print(f"[{i}/{len(benches)}] {bench}", flush=True)
    result = run_bench(
        spec,
        snakemake.params.bench,  # noqa: F821
        dataset_info=datasets[spec["dataset"]],
        out=folder / f"{bench}{BENCH_SUFFIX}",
        device=DEVICE,
        threads=snakemake.threads,  # noqa: F821
        run=identity(snakemake.config, bench, kind="bench"),  # noqa: F821
    )
    infer = result.get("infer_img_s")
    print(
        f"    training {result['train_img_s']:.1f} img/s, inference "
        f"{'-' if infer is None else f'{infer:.1f}'} img/s",
        flush=True,
    )
