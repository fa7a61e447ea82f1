"""One experiment's table: results/tables/{experiment}.{csv,md,html,tex}."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from pathlib import Path  # noqa: E402

from gmsop.aggregate.jobs import make_table  # noqa: E402

stem = Path(snakemake.output.csv).with_suffix("")  # noqa: F821
make_table(snakemake.params.experiment, list(snakemake.input.runs), list(snakemake.input.benches), stem)  # noqa: F821
