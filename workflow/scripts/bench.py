"""Measure the training/inference throughput of every network one experiment shows, one after
the other, each at its dataset's input shape: results/bench/{experiment}/{bench}.json."""
from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from pathlib import Path  # noqa: E402

from gmsop.gpu_slots import claim_gpus, job_device  # noqa: E402
from gmsop.pipeline import identity, run_bench  # noqa: E402
from gmsop.plugins import load_plugins  # noqa: E402

# Snakemake limits how many GPU jobs run at once but never says which GPU: take a free one
# (CUDA_VISIBLE_DEVICES) before CUDA starts; a no-op without GPUs or inside a SLURM job.
claim_gpus(int(snakemake.resources.gpu))  # noqa: F821
# A job that reserved no GPU (gpus_per_job 0) runs "auto" on the CPU (gmsop.gpu_slots.job_device).
DEVICE, NOTE = job_device(snakemake.params.device, int(snakemake.resources.gpu))  # noqa: F821
if NOTE:
    print(NOTE, flush=True)
load_plugins(snakemake.params.plugins)  # noqa: F821
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
        out=folder / f"{bench}.json",
        device=DEVICE,
        threads=snakemake.threads,  # noqa: F821
        run=identity(snakemake.config, bench, kind="bench"),  # noqa: F821
    )
    infer = result.get("infer_img_s")
    print(f"    training {result['train_img_s']:.1f} img/s, inference "
          f"{'-' if infer is None else f'{infer:.1f}'} img/s", flush=True)
