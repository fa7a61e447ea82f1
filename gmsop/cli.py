"""The ``gmsop`` console script: one sub-command per job, each a module with ``main(argv) -> int``
(imported only when run, so ``gmsop --help`` stays cheap)."""

from __future__ import annotations

import importlib
import sys

from gmsop import __version__

#: sub-command -> (module with ``main(argv)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("gmsop.cli_models", "table of every variant x backbone: params, rep. dim, FLOPs"),
    "train": ("gmsop.engine.train_cli", "train one variant on one dataset (resumable)"),
    "bench": ("gmsop.engine.throughput", "measure training/inference throughput (timm protocol)"),
    "data": ("gmsop.data.cli", "prepare, inspect or benchmark a dataset"),
    "check-device": ("gmsop.device_check", "the CUDA path: tests, mixtures, training, speed, GPU slots"),
    "preflight": ("gmsop.preflight", "a few dozen steps of every network of a config: does it train?"),
    "plan": ("gmsop.plan", "a workflow config in training jobs, images and GPU-hours"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: gmsop <command> [options]\n\ncommands:", *lines, sep="\n")
        print("\nRun 'gmsop <command> --help' for the options of one command.")
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gmsop: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(COMMANDS[name][0]).main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
