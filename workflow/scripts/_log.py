"""Send a script's stdout/stderr to its rule's log file (imported first by every script)."""

import os
import sys


def to_log(snakemake) -> None:
    if snakemake.log:
        os.makedirs(os.path.dirname(snakemake.log[0]) or ".", exist_ok=True)
        stream = open(snakemake.log[0], "a", buffering=1)
        sys.stdout = sys.stderr = stream
    os.environ.setdefault("MPLBACKEND", "Agg")
