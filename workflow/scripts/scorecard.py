"""Every claim of every experiment: results/scorecard.{csv,md,html}, its forest plot (.svg, .png) and
the report's landing fragment."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from pathlib import Path  # noqa: E402

from gmsop.aggregate.jobs import make_scorecard  # noqa: E402

make_scorecard(
    snakemake.params.experiments,  # noqa: F821
    list(snakemake.input.runs),  # noqa: F821
    Path(snakemake.output.csv).with_suffix(""),  # noqa: F821
    landing=snakemake.output.landing,  # noqa: F821
)
