"""``gmsop check-device``: options, device, header; the runner and the parts do the rest.

    gmsop check-device --out results/device-check                 # CUDA if present, full size
    gmsop check-device --device cpu --tiny --out /tmp/dc          # every part on a CPU, < 1 min

Exit status: 0 when no part failed (passed or skipped), 1 when one did, 2 for a bad option.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import socket
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["get_args_parser", "main", "parse_parts"]

DEFAULT_BUDGET_S = 480.0


def _part_names() -> list[str]:
    from gmsop.device_check.parts import PARTS

    return [p.name for p in PARTS]


def parse_parts(text: str) -> list[str]:
    """``"throughput,cuda-tests"`` (or ``all``) -> part names in run order; unknown names are an error."""
    names = _part_names()
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    if not wanted:
        raise argparse.ArgumentTypeError(f"--parts {text!r} names no part; choose from: all, {', '.join(names)}")
    if wanted == ["all"]:
        return names
    bad = [w for w in wanted if w not in names]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(map(repr, bad))}; choose from: all, {', '.join(names)}")
    return [n for n in names if n in wanted]


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--time-budget-s must be a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--time-budget-s must be a positive finite number of seconds, got {text!r}")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    from gmsop.device_check.parts import PARTS

    p = argparse.ArgumentParser(
        prog="gmsop check-device",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Settle the CUDA path on one device in a few minutes: run the CUDA-only tests, compare the\n"
            "mixture's two execution paths and look for host syncs, train every Table-2 variant briefly on\n"
            "generated downsampled-ImageNet files, measure throughput and MFU, run two gpu=1 Snakemake jobs.\n"
            "Prints one line per part (PASSED / FAILED / SKIPPED) as it finishes, writes DIR/device_check.json\n"
            "(rewritten after every part) and DIR/device_check.md. Exit status: 0 when no part failed,\n"
            "1 when one did, 2 for a bad option."
        ),
        epilog="parts, in the order they run:\n" + "\n".join(f"  {q.name:<16} {q.help}" for q in PARTS),
    )
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for device_check.json, device_check.md and the logs of the subprocesses (created)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: CUDA when available, else the CPU; cuda fails (exit 2) without a GPU (default: %(default)s)")
    p.add_argument("--tiny", action="store_true",
                   help="small sizes (width 0.25, 16x16 images, batch 32, 20 training steps; 1024^2 matmul): every part "
                   "runs on a CPU within a minute. Without it: full width, 64x64, batch 256, 8192^2 matmul (for CUDA)")
    p.add_argument("--parts", type=parse_parts, default=None, metavar="NAME[,NAME...]",
                   help="run only these parts, comma-separated, in the order listed below (default: all)")
    p.add_argument("--time-budget-s", type=_budget, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help="wall-time bound for the whole run (default: %(default)g). Each part gets a share of what "
                   "is left when it starts; it checks the clock between steps and is stopped by a timer at its "
                   "share plus a grace (5%%, at most 15 s). A part that runs out is reported FAILED (timed out) "
                   "with what it finished")
    return p


def _device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine (torch.cuda.is_available() is False)")
    return torch.device(spec)


def _env(device) -> dict[str, Any]:
    import torch

    from gmsop.engine.env import env_info

    info = env_info(device, deterministic=False)
    info["host"] = socket.gethostname()
    info["cuda_available"] = torch.cuda.is_available()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(cuda_device_count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}",
                    total_memory_gb=round(props.total_memory / 2**30, 2), multiprocessors=props.multi_processor_count,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = get_args_parser().parse_args(argv)
    from gmsop.device_check import report
    from gmsop.device_check.parts import FULL, PARTS, TINY, Context
    from gmsop.device_check.runner import run_parts

    try:
        device = _device(args.device)
    except ValueError as err:
        print(f"gmsop check-device: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"gmsop check-device: error: --out {out} is a file; give a folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    names = args.parts or [p.name for p in PARTS]
    parts = [p for p in PARTS if p.name in names]
    sizes = TINY if args.tiny else FULL
    header = {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {"device": args.device, "tiny": args.tiny, "parts": names, "time_budget_s": args.time_budget_s},
        "sizes": asdict(sizes),
        "env": _env(device),
    }
    print(f"gmsop check-device: {header['env']['device_name']} ({device}), torch {header['env']['torch_build']}, "
          f"{'tiny' if args.tiny else 'full'} sizes, {len(parts)} part(s), budget {args.time_budget_s:g} s", flush=True)
    if device.type == "cpu" and not args.tiny:
        print("gmsop check-device: note: full sizes are meant for a GPU; on a CPU most parts will run out of "
              "time (add --tiny)", flush=True)

    def save(records: list[dict[str, Any]], complete: bool = False) -> dict[str, Any]:
        doc = report.document(header, records, time.monotonic() - started, complete)
        report.write_json(out, doc)
        return doc

    with tempfile.TemporaryDirectory(prefix="gmsop-device-check-") as work:
        ctx = Context(device=device, sizes=sizes, tiny=args.tiny, out_dir=out.resolve(), work_dir=Path(work))
        records = run_parts(parts, ctx, args.time_budget_s - (time.monotonic() - started), on_record=save,
                            echo=lambda line: print(line, flush=True))
    doc = save(records, complete=True)
    report.write_markdown(out, doc)
    counts = doc["counts"]
    print(f"{doc['verdict'].upper()}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
          f"in {doc['wall_s']:.1f} s; wrote {out / report.JSON_NAME} and {out / report.MD_NAME}", flush=True)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
