"""``gmsop bench``: throughput of one variant (``gmsop.engine.throughput``) as JSON on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gmsop.atomic import atomic_write_json, to_json
from gmsop.engine.config import parse_key_value
from gmsop.engine.throughput import BenchConfig, measure_throughput


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"3,64,64"`` (or ``3x64x64``) -> (3, 64, 64)."""
    try:
        size = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
        if len(size) != 3 or min(size) < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"input size {text!r} must be three positive integers C,H,W, e.g. 3,64,64"
        ) from None
    return size  # type: ignore[return-value]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gmsop bench",
        description="Measure training (forward+backward+SGD step) and inference img/s of one model on a "
        "fixed synthetic batch: warm-up steps, then timed steps each ended by a device synchronisation; "
        "reports median and IQR step times, peak memory, parameters, FLOPs per image and achieved FLOP/s.",
    )
    add = p.add_argument
    add("--variant", help="variant name, e.g. ResNet-18-512d, SR-SOP, GM-GAP-16-8 (default: %(default)s)")
    add(
        "--backbone", help="resnet18, resnet50 or wrn36_2 (default: the one the variant names, else resnet18)"
    )
    add(
        "--input-size",
        type=parse_input_size,
        metavar="C,H,W",
        help="shape of one input image (default: 3,64,64, downsampled ImageNet)",
    )
    add("--num-classes", type=int, help="classifier outputs (default: %(default)s)")
    add("--batch-size", type=int, help="images per step (default: %(default)s)")
    add("--warmup", type=int, help="untimed warm-up steps per phase (default: %(default)s; timm uses >= 10)")
    add("--steps", type=int, help="timed steps per phase (default: %(default)s; timm uses >= 40)")
    add("--device", help="auto (CUDA if available), cpu, cuda or cuda:N (default: %(default)s)")
    add("--protocol", help="official (released code) or paper (default: %(default)s)")
    add(
        "--override",
        action="append",
        metavar="KEY=VALUE",
        help="protocol switch or head option, value parsed as JSON when possible "
        "(e.g. ns_iterations=5, num_experts=8, dims=[256,64]); repeatable",
    )
    add(
        "--no-amp",
        dest="amp",
        action="store_false",
        help="run in float32 instead of bf16 autocast (used on CUDA and on a CPU with native bf16)",
    )
    add("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    add("--seed", type=int, help="seed of the model init and the synthetic batch (default: %(default)s)")
    add("--out", metavar="bench.json", help="also write the JSON here (atomically)")
    p.set_defaults(**dataclasses.asdict(BenchConfig()))  # the defaults, shown by %(default)s
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        args.overrides = dict(parse_key_value(o, "--override") for o in args.override or [])
        result = measure_throughput(
            BenchConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig)})
        )
    except ValueError as err:
        print(f"gmsop bench: error: {err}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(args.out, result)
    sys.stdout.write(to_json(result))
    return 0
