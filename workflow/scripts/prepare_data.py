"""Build a dataset's cache once and record its shape: results/data/{dataset}.json."""

from _log import to_log

to_log(snakemake)  # noqa: F821 (injected by Snakemake)

from gmsop.pipeline import prepare_dataset  # noqa: E402

prepare_dataset(snakemake.params.dataset, snakemake.output[0])  # noqa: F821
