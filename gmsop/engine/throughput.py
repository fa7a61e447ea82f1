"""``gmsop bench``: training and inference throughput of one model, as timm's ``benchmark.py`` does.

One fixed synthetic batch on the device; ``warmup`` untimed steps, then ``steps`` timed steps
each ended by a device synchronisation. Reported: median step time and IQR, img/s, peak memory
(CUDA max allocated, else the process's peak RSS), parameters, forward FLOPs per image
(``gmsop.flops``) and achieved FLOP/s (a training step counted as 3x the forward).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from gmsop.atomic import atomic_write_json, to_json
from gmsop.engine.config import parse_key_value
from gmsop.engine.env import device_name, resolve_device, synchronize
from gmsop.engine.loop import Runtime, forward_loss
from gmsop.flops import count_flops, count_params
from gmsop.formats import BENCH_FORMAT
from gmsop.registry import build_model


@dataclass
class BenchConfig:
    """One throughput measurement; defaults match the paper's 64x64 ImageNet-1K setting."""

    variant: str = "GM-SOP-16-8"
    backbone: str | None = None
    input_size: tuple[int, int, int] = (3, 64, 64)  # (C, H, W) of one image
    num_classes: int = 1000
    batch_size: int = 64
    warmup: int = 10  # untimed steps (timm: >= 10)
    steps: int = 40  # timed steps (timm: >= 40)
    device: str = "auto"
    protocol: str = "official"
    overrides: dict[str, Any] = field(default_factory=dict)
    amp: bool = True  # bf16 autocast where training uses it (Runtime.for_device)
    compile: bool = False  # torch.compile (CUDA only)
    seed: int = 0

    def __post_init__(self) -> None:
        size = tuple(self.input_size)
        if len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
            raise ValueError(f"input_size must be three positive integers C,H,W, got {self.input_size!r}")
        self.input_size = size
        for name, lo in (("num_classes", 2), ("batch_size", 2), ("warmup", 0), ("steps", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                why = " for a training step with BatchNorm" if name == "batch_size" else ""
                raise ValueError(f"{name} must be an integer >= {lo}{why}, got {v!r}")
        if not isinstance(self.overrides, dict):
            raise ValueError(f"overrides must be a mapping, got {self.overrides!r}")


def step_stats(times_s: list[float]) -> tuple[float, float]:
    """(median, inter-quartile range) of step times, in milliseconds."""
    ms = sorted(t * 1e3 for t in times_s)
    if len(ms) == 1:
        return ms[0], 0.0
    q = statistics.quantiles(ms, n=4, method="inclusive")
    return statistics.median(ms), q[2] - q[0]


def _timed(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def measure_throughput(cfg: BenchConfig) -> dict[str, Any]:
    """Run the protocol above; returns the bench JSON object."""
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training does outside deterministic mode
    rt = Runtime.for_device(device, amp=cfg.amp)
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.variant,
        backbone=cfg.backbone,
        num_classes=cfg.num_classes,
        protocol=cfg.protocol,
        **cfg.overrides,
    )
    params = count_params(model)
    flops = count_flops(model, input_size=cfg.input_size)
    fwd = rt.prepare(model, cfg.compile)

    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    x = rt.place(torch.randn(cfg.batch_size, *cfg.input_size, generator=gen).to(device))
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=model.protocol.weight_decay)

    def train_step() -> None:
        _, ce, balance = forward_loss(fwd, x, y, rt)
        loss = ce + balance
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step() -> None:
        with torch.inference_mode(), rt.autocast():
            fwd(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train_ms, train_iqr = step_stats(_timed(train_step, device, cfg.warmup, cfg.steps))
    model.eval()
    infer_ms, infer_iqr = step_stats(_timed(infer_step, device, cfg.warmup, cfg.steps))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # the process's lifetime peak RSS: bytes on macOS, KiB on Linux
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10

    train_img_s = cfg.batch_size / (train_ms / 1e3)
    infer_img_s = cfg.batch_size / (infer_ms / 1e3)
    return {
        "format_version": BENCH_FORMAT,
        "run": None,  # the workflow sets its identity block (gmsop.pipeline.run_bench)
        "variant": model.info["variant"],
        "backbone": model.info["backbone"],
        "protocol": model.info["protocol"],
        "input_size": list(cfg.input_size),
        "num_classes": cfg.num_classes,
        "batch_size": cfg.batch_size,
        "device": device.type,
        "device_name": device_name(device),
        "train_img_s": train_img_s,
        "train_step_ms_median": train_ms,
        "train_step_ms_iqr": train_iqr,
        "infer_img_s": infer_img_s,
        "infer_step_ms_median": infer_ms,
        "infer_step_ms_iqr": infer_iqr,
        "peak_mem_mb": peak,
        "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "host_peak_rss",
        "params": params,
        "rep_dim": model.rep_dim,
        "flops_per_image": flops,
        "achieved_tflops": 3.0 * flops * train_img_s / 1e12,
        "achieved_infer_tflops": flops * infer_img_s / 1e12,
        "warmup": cfg.warmup,
        "steps": cfg.steps,
        "overrides": dict(cfg.overrides),
        "env": rt.env(deterministic=False, compiled=fwd is not model),
    }


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
    p.set_defaults(**asdict(BenchConfig()))  # the defaults, shown by %(default)s
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        args.overrides = dict(parse_key_value(o, "--override") for o in args.override or [])
        result = measure_throughput(
            BenchConfig(**{f.name: getattr(args, f.name) for f in fields(BenchConfig)})
        )
    except ValueError as err:
        print(f"gmsop bench: error: {err}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(args.out, result)
    sys.stdout.write(to_json(result))
    return 0
