"""Train (or resume) one planned run for one seed; writes metrics.json last, atomically."""
from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.pipeline import run_training  # noqa: E402
from gmsop.plugins import load_plugins  # noqa: E402

load_plugins(snakemake.params.plugins)  # noqa: F821
run_training(
    snakemake.params.spec,  # noqa: F821
    snakemake.params.dataset,  # noqa: F821
    seed=int(snakemake.wildcards.seed),  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
    ckpt_dir=snakemake.params.ckpt_dir,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
