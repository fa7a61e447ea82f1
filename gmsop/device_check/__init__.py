"""``gmsop check-device``: settle the CUDA path on the first GPU we get, in a few minutes.

A GPU is lent to this project rarely and briefly, so one command must find out, within a time
bound, everything that CPU-only CI cannot: do the CUDA-only tests pass, do the mixture's two
execution paths agree under bf16 on the device without host syncs, does every Table-2 variant
train through the real data path, how fast is each (and how far from the device's own matmul
rate), and does the per-GPU slot allocator work under Snakemake. On a CPU, ``--tiny`` runs
the same code at small sizes as a smoke test (tests/test_device_check.py).

Modules:
    cli.py      options, device, header; ``main(argv)``
    runner.py   the parts' time budget (cooperative checks + SIGALRM hard stop), isolation
    parts.py    the five parts and their sizes (FULL for CUDA, TINY)
    report.py   device_check.json (atomic, after every part) and device_check.md
"""
from gmsop.device_check.cli import main

__all__ = ["main"]
