"""One training epoch and one evaluation pass, each returning a dict of averaged metrics.

A step: ``loss = cross_entropy(logits, y) + balance`` (balance already alpha-weighted), SGD. Metric
sums stay on the device and are read once per epoch; the non-finite-loss check reads every
``check_every`` steps (every step on the CPU) and still names the first bad step.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmsop.engine.env import env_info, synchronize
from gmsop.layers.gating import distinct_selections, selection_mask


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run cannot continue meaningfully."""

    def __init__(self, epoch: int, step: int, steps: int | None, value: float, detail: str = ""):
        self.epoch, self.step, self.value = epoch, step, value
        of = f" of {steps}" if steps else ""
        super().__init__(f"non-finite training loss ({value}) at epoch {epoch}, step {step}{of}{detail}")


@dataclass(frozen=True)
class Runtime:
    """How tensors are placed and computed on the device. ``for_device``: bf16 autocast of the forward
    (SOP and losses stay float32) on CUDA and on a CPU with native bf16, channels_last (NHWC) on both
    (``benchmarks/bench_cpu_training.py``: 1.4-1.8x faster per image than float32 NCHW on CPU)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None  # torch.bfloat16 with amp; None = float32
    channels_last: bool = False  # NHWC model and inputs
    check_every: int = 1  # steps between non-finite checks (1 on CPU)

    @classmethod
    def for_device(cls, device: torch.device, amp: bool = True) -> Runtime:
        cuda, caps = device.type == "cuda", getattr(torch.cpu, "get_capabilities", dict)()
        native = bool(caps.get("avx512_bf16") or caps.get("amx_tile"))  # else emulated: slower than float32
        dtype = torch.bfloat16 if amp and (cuda or (device.type == "cpu" and native)) else None
        return cls(device, dtype, channels_last=device.type in ("cuda", "cpu"), check_every=20 if cuda else 1)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def place(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, model: nn.Module, compile: bool) -> nn.Module:
        """Move ``model`` to the device (NHWC when set); returns what to call (compiled on CUDA if asked)."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if compile and self.device.type == "cuda" else model

    def env(self, deterministic: bool, compiled: bool) -> dict[str, Any]:
        """``env_info`` of a run on this runtime."""
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype is not None else None
        return env_info(
            self.device, deterministic, amp=amp, channels_last=self.channels_last, compile=compiled
        )


def forward_loss(model: nn.Module, x: Tensor, y: Tensor, rt: Runtime) -> tuple[Any, Tensor, Tensor]:
    """(model output, mean cross-entropy, balance loss) of one placed batch, autocast as ``rt`` says."""
    with rt.autocast():
        out = model(x)
    return out, F.cross_entropy(out.logits.float(), y), out.balance_loss.float()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer,
    rt: Runtime,
    *,
    epoch: int,
    steps: int | None = None,
    num_experts: int | None = None,
    progress=None,
) -> dict:
    """One pass over ``batches`` ((x, y) on the device): sample-weighted means of CE, balance, loss and
    top-1 error (percent), samples, time, img/s; for a gated mixture (``num_experts``) also routing
    counts and importance summed over the epoch, gate spreads and per-batch routing."""
    model.train()
    trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    dev = rt.device
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # ce*n, balance*n, loss*n, correct
    counts = torch.zeros(num_experts, dtype=torch.float64, device=dev) if num_experts else None
    importance = torch.zeros(num_experts, dtype=torch.float64, device=dev) if num_experts else None
    spreads = torch.zeros(2, dtype=torch.float64, device=dev)  # logit_spread*n, noise_spread*n
    # per batch: distinct Top-K sets and idle components (sums, then the worst of the epoch)
    per_batch = torch.zeros(2, dtype=torch.float64, device=dev)
    worst = torch.tensor([float("inf"), 0.0], dtype=torch.float64, device=dev)  # fewest sets, most idle
    pending: list[Tensor] = []  # losses since the last finiteness check
    step = samples = checked = spread_samples = routed_batches = 0  # checked: steps already checked
    synchronize(dev)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(batches, start=1):
        out, ce, balance = forward_loss(model, rt.place(x), y, rt)
        loss = ce + balance
        pending.append(loss.detach())
        if step % rt.check_every == 0:
            _check(pending, checked, epoch, steps)
            checked, pending = step, []
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # a zero gradient instead of none: SGD skips a parameter without one (no decay, no momentum), and
        # an unrouted component has none on the CPU path but zeros on the grouped GPU path
        for p in trainable:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        optimizer.step()

        n = y.shape[0]
        samples += n
        with torch.no_grad():
            correct = (out.logits.argmax(dim=1) == y).sum()
            sums += torch.stack([ce.detach() * n, balance.detach() * n, loss.detach() * n, correct]).double()
            if counts is not None and out.gate is not None:
                counts += out.gate.counts.double()
                importance += out.gate.importance.double()
                if out.gate.logit_spread is not None and out.gate.noise_spread is not None:
                    spreads += torch.stack([out.gate.logit_spread, out.gate.noise_spread]).double() * n
                    spread_samples += n
                if out.gate.selected is not None:
                    now = torch.stack(
                        [distinct_selections(out.gate.selected, num_experts), (out.gate.counts == 0).sum()]
                    ).double()
                    per_batch += now
                    worst = torch.stack([torch.minimum(worst[0], now[0]), torch.maximum(worst[1], now[1])])
                    routed_batches += 1
        if progress is not None:
            progress.step(float(loss.detach()) if rt.device.type == "cpu" else None)
    if pending:
        _check(pending, checked, epoch, steps)
    synchronize(dev)
    elapsed = time.perf_counter() - t0
    if samples == 0:
        raise ValueError(f"epoch {epoch}: the training loader produced no batches")
    ce_sum, bal_sum, loss_sum, correct = sums.tolist()
    (distinct, idle), (fewest, most), routed = per_batch.tolist(), worst.tolist(), routed_batches
    return {
        "train_ce": ce_sum / samples,
        "train_balance": bal_sum / samples,
        "train_loss": loss_sum / samples,
        "train_top1_err": 100.0 * (1.0 - correct / samples),
        "train_samples": samples,
        "train_steps": step,
        "train_time_s": elapsed,
        "train_img_s": samples / elapsed if elapsed > 0 else None,
        "routing_counts": [int(round(c)) for c in counts.tolist()] if counts is not None else None,
        "importance": importance.tolist() if importance is not None else None,
        "gate_logit_spread": spreads[0].item() / spread_samples if spread_samples else None,
        "gate_noise_spread": spreads[1].item() / spread_samples if spread_samples else None,
        # per batch: distinct Top-K sets and idle components (None without a gate reporting selections)
        "distinct_topk_mean": distinct / routed if routed else None,
        "distinct_topk_min": int(fewest) if routed else None,
        "idle_components_mean": idle / routed if routed else None,
        "idle_components_max": int(most) if routed else None,
    }


def _check(pending: list[Tensor], checked: int, epoch: int, steps: int | None) -> None:
    """Raise on the first non-finite loss of ``pending`` (one device read)."""
    stacked = torch.stack(pending)
    bad = ~torch.isfinite(stacked)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise NonFiniteLossError(epoch, checked + i + 1, steps, float(stacked[i]))


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    rt: Runtime,
    *,
    num_classes: int,
    num_experts: int | None = None,
) -> dict:
    """Top-1 / top-min(5, classes) error (percent) and mean CE over ``batches``, in eval mode; for a
    mixture ``val_routing[c][i]`` counts the images of class c that select component i."""
    model.eval()
    k = min(5, num_classes)
    sums = torch.zeros(3, dtype=torch.float64, device=rt.device)  # ce*n, top1 correct, topk correct
    routing = torch.zeros(num_classes, num_experts, device=rt.device) if num_experts else None
    per_class = torch.zeros(num_classes, device=rt.device)
    samples = 0
    synchronize(rt.device)
    t0 = time.perf_counter()
    for x, y in batches:
        out, ce, _ = forward_loss(model, rt.place(x), y, rt)
        if routing is not None and out.gate is not None and out.gate.selected is not None:
            routing.index_add_(0, y, selection_mask(out.gate.selected, num_experts))
        per_class.index_add_(0, y, torch.ones_like(y, dtype=per_class.dtype))
        hit = out.logits.float().topk(k, dim=1).indices == y[:, None]  # (B, k)
        n = y.shape[0]
        samples += n
        sums += torch.stack([ce * n, hit[:, 0].sum(), hit.any(dim=1).sum()]).double()
    synchronize(rt.device)
    if samples == 0:
        raise ValueError("evaluation: the validation loader produced no batches")
    ce_sum, top1, topk = sums.tolist()
    return {
        "val_ce": ce_sum / samples,
        "val_top1_err": 100.0 * (1.0 - top1 / samples),
        "val_top5_err": 100.0 * (1.0 - topk / samples),
        "val_samples": samples,
        "val_time_s": time.perf_counter() - t0,
        "val_routing": [[int(v) for v in row] for row in routing.tolist()] if routing is not None else None,
        "val_class_counts": [int(v) for v in per_class.tolist()],
    }
