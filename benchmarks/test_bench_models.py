"""One training step of every Table-2 variant (ResNet-18, 64x64, 1000 classes, official protocol).

A step = forward, cross-entropy + balance loss, backward, SGD (momentum 0.9, weight decay 1e-4)
on one fixed batch. FLOPs are those the step's forward and backward execute (matmuls and
convolutions, counted by ``torch.utils.flop_counter``); achieved FLOP/s are compared with the
machine's measured float32 matmul rate. Gated models get a spread gate (see
test_bench_mixture.py).

Targets (side by side): achieved FLOP/s of GM-SOP-16-8 >= 0.9 x Parametric SR-SOP's, of
GM-GAP-16-8 >= 0.9 x ResNet-18-512d's; step time GM-SOP-16-8 / SR-SOP <= 2.2 and
GM-GAP-16-8 / ResNet-18-512d <= 1.84.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from _bench import CUDA, DEVICE, count_flops, matmul_peak_flops, record, side_by_side

import gmsop
from gmsop.paper_values import PAPER_VALUES

BATCH = int(os.environ.get("GMSOP_BENCH_BATCH") or (64 if CUDA else 16))
TABLE2 = [v.variant for v in PAPER_VALUES if v.table == "table2"]


class _Step:
    def __init__(self, variant: str):
        torch.manual_seed(0)
        self.model = gmsop.build_model(variant, num_classes=1000).to(DEVICE).train()
        if getattr(self.model.head, "gate", None) is not None:
            with torch.no_grad():
                self.model.head.gate.w_gate.normal_(0.0, 0.01)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH, 3, 64, 64, generator=g).to(DEVICE)
        self.y = torch.randint(0, 1000, (BATCH,), generator=g).to(DEVICE)
        self.flops = count_flops(self.forward_backward)

    def forward_backward(self):
        self.opt.zero_grad(set_to_none=True)
        out = self.model(self.x)
        (F.cross_entropy(out.logits, self.y) + out.balance_loss).backward()

    def __call__(self):
        self.forward_backward()
        self.opt.step()


@pytest.mark.parametrize("variant", TABLE2)
def test_training_step(benchmark, variant):
    step = _Step(variant)
    med = side_by_side(benchmark, {variant: step})
    rate = step.flops / med[variant]
    benchmark.extra_info.update(flops=step.flops, flops_per_s=rate, matmul_peak=matmul_peak_flops())
    record(
        f"Training step B={BATCH}: achieved FLOP/s / measured matmul FLOP/s",
        variant,
        rate / matmul_peak_flops(),
        "",
        f"({step.flops / 1e9:.1f} GFLOP, {med[variant] * 1e3:.0f} ms, {rate / 1e9:.1f} GFLOP/s; "
        f"matmul {matmul_peak_flops() / 1e9:.1f} GFLOP/s)",
    )


PAIRS = {
    "GM-SOP-16-8": (["Parametric SR-SOP", "SR-SOP"], "Parametric SR-SOP", "SR-SOP", 2.2),
    "GM-GAP-16-8": (["ResNet-18-512d"], "ResNet-18-512d", "ResNet-18-512d", 1.84),
}


@pytest.mark.parametrize("gated", list(PAIRS))
def test_gated_mixture_costs_only_its_flops(benchmark, gated):
    others, flops_base, time_base, time_target = PAIRS[gated]
    steps = {name: _Step(name) for name in [gated] + others}
    med = side_by_side(benchmark, steps)
    rate = {n: steps[n].flops / med[n] for n in steps}
    # achieved FLOP/s ratio = FLOP ratio / time ratio, with the per-round time ratio
    time_ratio = {n: benchmark.extra_info[f"ratio:{n}"] for n in steps}  # time(n) / time(gated)
    flop_rate_ratio = (steps[gated].flops / steps[flops_base].flops) * time_ratio[flops_base]
    section = f"Gated mixture, training step B={BATCH}, side by side"
    record(
        section,
        f"FLOP/s {gated} / FLOP/s {flops_base}",
        flop_rate_ratio,
        ">= 0.9",
        f"({rate[gated] / 1e9:.1f} vs {rate[flops_base] / 1e9:.1f} GFLOP/s; "
        f"{steps[gated].flops / 1e9:.1f} vs {steps[flops_base].flops / 1e9:.1f} GFLOP)",
    )
    for name in others:
        target = f"<= {time_target}" if name == time_base else ""
        record(
            section,
            f"step time {gated} / {name}",
            1.0 / time_ratio[name],
            target,
            f"({med[gated] * 1e3:.0f} vs {med[name] * 1e3:.0f} ms)",
        )
