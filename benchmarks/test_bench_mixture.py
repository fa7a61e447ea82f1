"""The gated mixture head alone: does it cost K components whatever N is?

Heads as ``build_model`` makes them under the official protocol on ResNet-18 (128 channels):
GM-SOP-N-8 on the 16x16 map of a 64x64 image (M = 256), GM-GAP-N-8 on the 8x8 map. One
training step of the head = forward, (mean square of the representation + balance loss),
backward. The gate's weights are spread (N(0, 0.01)) so samples route to different components,
as after a little training (the constant initial gate sends every sample to the same K).

Targets: head step time at N = 64 <= 1.15 x the time at N = 16 (K = 8). Also recorded, for
information: the two execution paths of ``GatedMixture`` side by side at N = 16.
"""

from __future__ import annotations

import os

import pytest
import torch
from _bench import CUDA, DEVICE, record, side_by_side

from gmsop.heads import create_head
from gmsop.protocol import get_protocol

HEAD_BATCH = int(os.environ.get("GMSOP_BENCH_HEAD_BATCH") or (64 if CUDA else 32))
FAMILIES = {"gm_sop": 16, "gm_gap": 8}  # head family -> side of the backbone map at 64x64


def _head(family: str, n: int, execution: str = "auto"):
    torch.manual_seed(0)
    head = create_head(family, 128, get_protocol("official"), num_experts=n, k=8).to(DEVICE).train()
    with torch.no_grad():
        head.gate.w_gate.normal_(0.0, 0.01)
    head.execution = execution
    return head


def _step(head, x):
    def run():
        head.zero_grad(set_to_none=True)
        y, stats = head(x)
        (y.float().square().mean() + stats.balance_loss).backward()

    return run


def _input(family: str) -> torch.Tensor:
    side = FAMILIES[family]
    g = torch.Generator().manual_seed(0)
    return torch.randn(HEAD_BATCH, 128, side, side, generator=g).relu_().to(DEVICE)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_cost_does_not_grow_with_n(benchmark, family):
    x = _input(family)
    heads = {"N=16": _head(family, 16), "N=64": _head(family, 64)}
    side_by_side(benchmark, {name: _step(h, x) for name, h in heads.items()})
    r = benchmark.extra_info["ratio:N=64"]
    path = heads["N=16"].execution_path(DEVICE)
    record(
        "Mixture head: step time N=64 / N=16 (K=8)", f"{family} B={HEAD_BATCH} ({path} path)", r, "<= 1.15"
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_execution_paths(benchmark, family):
    """grouped (batched routed matmuls, no host sync) vs generic (each component called as a module)."""
    x = _input(family)
    base = _head(family, 16).execution_path(DEVICE)  # what "auto" picks on this device
    other = "grouped" if base == "generic" else "generic"
    heads = {p: _head(family, 16, p) for p in (base, other)}
    side_by_side(benchmark, {p: _step(heads[p], x) for p in (base, other)})
    record(
        "Mixture head: execution paths, time / time of the default path",
        f"{family} B={HEAD_BATCH} N=16: {other} / {base}",
        benchmark.extra_info[f"ratio:{other}"],
        "",
        "(> 1: the default is faster)",
    )
