"""Train (or resume) one planned run for one seed; writes metrics.json last, atomically."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.pipeline import identity, run_training, start_job  # noqa: E402

DEVICE = start_job(snakemake.params.device, snakemake.resources.gpu, snakemake.params.plugins)  # noqa: F821
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
