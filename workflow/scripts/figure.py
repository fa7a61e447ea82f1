"""One figure (curves, alpha_counts, alpha_error, grid or class_routing) as SVG + PNG."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.aggregate.jobs import make_figure  # noqa: E402

inputs = snakemake.input  # noqa: F821
make_figure(
    snakemake.params.figure,  # noqa: F821
    snakemake.params.experiment,  # noqa: F821
    list(inputs.runs),
    list(inputs.benches) if hasattr(inputs, "benches") else None,
    [snakemake.output.svg, snakemake.output.png],  # noqa: F821
)
