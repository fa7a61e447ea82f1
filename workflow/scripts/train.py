"""Train (or resume) one planned run for one seed; writes metrics.json last, atomically."""
from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.gpu_slots import claim_gpus, job_device  # noqa: E402
from gmsop.pipeline import identity, run_training  # noqa: E402
from gmsop.plugins import load_plugins  # noqa: E402

# Snakemake limits how many GPU jobs run at once but never says which GPU: take a free one
# (CUDA_VISIBLE_DEVICES) before CUDA starts; a no-op without GPUs or inside a SLURM job.
claim_gpus(int(snakemake.resources.gpu))  # noqa: F821
# A job that reserved no GPU (gpus_per_job 0) runs "auto" on the CPU (gmsop.gpu_slots.job_device).
DEVICE, NOTE = job_device(snakemake.params.device, int(snakemake.resources.gpu))  # noqa: F821
if NOTE:
    print(NOTE, flush=True)
load_plugins(snakemake.params.plugins)  # noqa: F821
run_training(
    snakemake.params.spec,  # noqa: F821
    snakemake.params.dataset,  # noqa: F821
    seed=int(snakemake.wildcards.seed),  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
    ckpt_dir=snakemake.params.ckpt_dir,  # noqa: F821
    device=DEVICE,
    threads=snakemake.threads,  # noqa: F821
    eval_every=int(snakemake.params.eval_every),  # noqa: F821
    # the run id, the rows it was planned for and its settings, written into metrics.json
    run=identity(snakemake.config, snakemake.wildcards.run),  # noqa: F821
)
