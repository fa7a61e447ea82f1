"""Check a user's rule's metrics.json (format, run id, seed) and copy it to where tables read it."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.pipeline import check_rule_result  # noqa: E402

check_rule_result(
    snakemake.input[0],  # noqa: F821
    snakemake.wildcards.rulename,  # noqa: F821
    int(snakemake.wildcards.seed),  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
