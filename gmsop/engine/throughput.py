"""Training and inference throughput of one model, measured as timm's ``benchmark.py`` does.

One fixed synthetic batch on the device; ``warmup`` untimed steps, then ``steps`` timed steps
each ended by a device synchronisation. Reported: median step time and IQR, img/s, peak memory
(CUDA max allocated, else the process's peak RSS), parameters, forward FLOPs per image
(``gmsop.flops``) and achieved FLOP/s (a training step counted as 3x the forward).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from gmsop.engine.env import device_name, peak_memory_mb, resolve_device, synchronize
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
    train_times = _timed(train_step, device, cfg.warmup, cfg.steps)
    model.eval()
    infer_times = _timed(infer_step, device, cfg.warmup, cfg.steps)
    peak = peak_memory_mb(device)

    train_ms, train_iqr = step_stats(train_times)
    infer_ms, infer_iqr = step_stats(infer_times)
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
