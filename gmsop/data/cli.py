"""``gmsop data list | info NAME | prepare NAME | bench NAME``: list, inspect, cache or time a dataset.

Dataset options go as ``--name value`` (dashes or underscores), read as JSON where they parse
(numbers, true/false/null, {"pad": 4}), else as strings; ``gmsop data info NAME --help`` lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gmsop.data import dataset_options, get_dataset, list_datasets
from gmsop.data.throughput import measure_loader_throughput


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def _parse_options(rest: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` pairs -> {key: value} (consumes ``rest``); else ValueError."""
    options: dict[str, Any] = {}
    while rest:
        tok = rest.pop(0)
        if not tok.startswith("--") or tok == "--":
            raise ValueError(f"unexpected argument {tok!r}; dataset options look like --name value")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if not rest:
                raise ValueError(f"option --{key} needs a value")
            value = rest.pop(0)
        options[key.replace("-", "_")] = _parse_value(value)
    return options


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(
        prog="gmsop data",
        description="List, inspect, prepare (cache) or benchmark a dataset.",
        epilog="Dataset options go as --name value; 'gmsop data info NAME --help' lists them.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="names of the registered datasets")
    subs = {}
    for name, help_ in (
        ("info", "print splits, shapes, classes, mean/std, augmentation"),
        ("prepare", "build the dataset's cache once (file-backed datasets)"),
        ("bench", "images/s of the loader + training augmentation"),
    ):
        sp = subs[name] = sub.add_parser(name, help=help_, description=help_, add_help=False)
        sp.add_argument("name", nargs="?", help="dataset name (gmsop data list)")
        sp.add_argument("--root", default=None, help="folder holding the dataset's files")
        sp.add_argument("-h", "--help", action="store_true", help="show this help and the dataset's options")
        if name == "info":
            sp.add_argument("--json", action="store_true", help="print the summary as JSON")
        if name == "bench":
            sp.add_argument("--batch-size", type=int, default=256)
            sp.add_argument("--seconds", type=float, default=5.0)
            sp.add_argument("--device", default="cpu")
    return p, subs


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"dataset      {summary['name']}  ({summary['num_classes']} classes)")
    for split in ("train", "val"):
        s = summary[split]
        print(f"{split:<12} {s['n']:,} images of {'x'.join(map(str, s['shape']))}  ({s['source']})")
    print(f"input size   {'x'.join(map(str, summary['input_size']))} after augmentation")
    print(f"mean (0-255) {', '.join(f'{m:.3f}' for m in summary['mean'])}")
    print(f"std  (0-255) {', '.join(f'{s:.3f}' for s in summary['std'])}")
    aug = ", ".join(f"{k}={v}" for k, v in summary["augment"].items())
    print(f"augment      {aug}")
    info = summary.get("info", {})
    for key in ("source", "cache"):
        if key in info:
            print(f"{key:<12} {info[key]}")
    for note in info.get("notes", []):
        print(f"note         {note}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subs = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "list":
        if rest:
            parser.error(f"unexpected arguments {rest}")
        for name in list_datasets():
            print(name)
        return 0
    try:
        if args.help or args.name is None:
            print(subs[args.command].format_help().rstrip())
            if args.name is not None:
                print(f"\noptions of dataset {args.name!r} (default):")
                for key, default in dataset_options(args.name).items():
                    print(f"  --{key.replace('_', '-'):<18} {default!r}")
            else:
                print(f"\ndatasets: {', '.join(list_datasets())}")
            return 0 if args.help else 2
        options = _parse_options(rest)
        dataset = get_dataset(args.name, root=args.root, **options)
    except ValueError as exc:
        print(f"gmsop data {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "info":
        summary = dataset.summary()
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_summary(summary)
    elif args.command == "prepare":
        cache = dataset.info.get("cache")
        if cache is None:
            print(f"{args.name}: nothing to prepare (no cache; data is generated or loaded directly)")
        else:
            n_train, n_val = len(dataset.train), len(dataset.val)
            print(f"{args.name}: cache ready at {cache} ({n_train:,} train, {n_val:,} val)")
    else:  # bench
        result = measure_loader_throughput(dataset, args.batch_size, args.seconds, args.device)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
