"""The second-order layer (covariance -> Newton-Schulz square root -> triangle), forward + backward.

Grid: d = 128; M = 64 (8x8 map) and 256 (16x16); batch 64 and 576 (= 64 samples x 9 SOP
evaluations, what one GM-SOP-16-8 step pools); 3 and 5 iterations. Candidates:

* ``gmsop``     ``gmsop.functional.isqrt_cov`` (the fused Function);
* ``reference`` a re-implementation of fast-MPN-COV's algorithm (``mpncov_reference.py``), or the
                public ``MPNCOV.py`` itself when ``GMSOP_MPNCOV_FILE`` points at it;
* ``autograd``  the same iteration written with plain tensor ops, differentiated by autograd.

Targets: reference / gmsop >= 1.5, autograd / gmsop >= 1.0, peak memory below autograd's, and
outputs + gradients equal to the reference (float64, relative 1e-6).
"""

from __future__ import annotations

import os

import pytest
import torch
from _bench import CUDA, DEVICE, peak_memory, record, side_by_side
from mpncov_reference import load_reference

from gmsop.functional import EPS, isqrt_cov, triu_vector

D = 128
BATCHES = [int(b) for b in os.environ.get("GMSOP_BENCH_LAYER_BATCHES", "64,576").split(",")]


def autograd_isqrt_cov(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """The iteration of gmsop.functional with plain ops (identity products skipped as there)."""
    x = x.flatten(2)
    m = x.shape[-1]
    xc = x - x.mean(dim=-1, keepdim=True)
    sigma = torch.bmm(xc, xc.transpose(1, 2)) / m
    norm = sigma.diagonal(dim1=1, dim2=2).sum(-1) + EPS
    a = sigma / norm[:, None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    t = 1.5 * eye - 0.5 * a
    y, z = torch.bmm(a, t), t
    for k in range(1, iterations):
        t = 1.5 * eye - 0.5 * torch.bmm(z, y)
        if k + 1 < iterations:
            y, z = torch.bmm(y, t), torch.bmm(t, z)
        else:
            y = torch.bmm(y, t)
    return triu_vector(y * norm.sqrt()[:, None, None])


reference_isqrt_cov, REFERENCE = load_reference()  # GMSOP_MPNCOV_FILE: the public file itself
CANDIDATES = {"gmsop": isqrt_cov, "reference": reference_isqrt_cov, "autograd": autograd_isqrt_cov}


def _features(b: int, m: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    side = int(round(m**0.5))
    return (
        torch.randn(b, D, side, side, generator=g, dtype=dtype).relu_().to(DEVICE)
    )  # ReLU'd like a real map


@pytest.mark.parametrize("iterations", [3, 5])
def test_outputs_and_gradients_equal_the_reference(benchmark, iterations):
    """float64, d = 128, M = 64 and 256: gmsop vs the reference and vs autograd, relative 1e-6."""
    worst = 0.0
    for m in (64, 256):
        x = _features(3, m, torch.float64, seed=1)
        grad = torch.randn(3, D * (D + 1) // 2, dtype=torch.float64, device=DEVICE)
        results = {}
        for name, fn in CANDIDATES.items():
            xi = x.clone().requires_grad_()
            out = fn(xi, iterations)
            out.backward(grad)
            results[name] = (out.detach(), xi.grad)
        for other in ("reference", "autograd"):
            for a, b in zip(results["gmsop"], results[other]):
                worst = max(worst, float((a - b).norm() / b.norm()))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info["max_relative_error"] = worst
    record(
        "SOP layer: correctness (float64)",
        f"J={iterations}: max rel. error vs reference/autograd",
        worst,
        "<= 1e-6",
        f"(reference: {REFERENCE})",
    )
    assert worst <= 1e-6


@pytest.mark.parametrize("iterations", [3, 5])
@pytest.mark.parametrize("m", [64, 256])
@pytest.mark.parametrize("batch", BATCHES)
def test_layer_forward_backward(benchmark, batch, m, iterations):
    x = _features(batch, m)
    grad = torch.randn(batch, D * (D + 1) // 2, device=DEVICE)

    def step(fn):
        def run():
            xi = x.detach().requires_grad_()
            fn(xi, iterations).backward(grad)

        return run

    med = side_by_side(benchmark, {name: step(fn) for name, fn in CANDIDATES.items()})
    label = f"B={batch} M={m} J={iterations}"
    speed_ref = med["reference"] / med["gmsop"]
    speed_ag = med["autograd"] / med["gmsop"]
    # medians of the per-round ratios (robust to a drifting machine load)
    r_ref = benchmark.extra_info["ratio:reference"]
    r_ag = benchmark.extra_info["ratio:autograd"]
    record(
        "SOP layer: speed-up of gmsop, fwd+bwd",
        f"{label}: reference / gmsop",
        r_ref,
        ">= 1.5",
        f"(medians {med['reference'] * 1e3:.0f} / {med['gmsop'] * 1e3:.0f} ms = {speed_ref:.2f})",
    )
    record(
        "SOP layer: speed-up of gmsop, fwd+bwd",
        f"{label}: autograd / gmsop",
        r_ag,
        ">= 1.0",
        f"(medians {med['autograd'] * 1e3:.0f} / {med['gmsop'] * 1e3:.0f} ms = {speed_ag:.2f})",
    )

    def mem(fn):
        def run():
            xi = x.detach().requires_grad_()
            out = fn(xi, iterations)
            return lambda: out.backward(grad)

        return run

    if (
        batch == min(BATCHES) or CUDA
    ):  # memory does not depend on timing noise: one batch size suffices on the CPU
        peaks = {name: peak_memory(mem(fn)) for name, fn in CANDIDATES.items()}
        for name, (peak, held) in peaks.items():
            benchmark.extra_info[f"peak_MiB:{name}"] = peak / 2**20
            benchmark.extra_info[f"held_after_forward_MiB:{name}"] = held / 2**20
        record(
            "SOP layer: peak memory of fwd+bwd, gmsop / autograd",
            f"{label}",
            peaks["gmsop"][0] / peaks["autograd"][0],
            "<= 0.999",
            f"(peak MiB gmsop {peaks['gmsop'][0] / 2**20:.0f}, "
            f"autograd {peaks['autograd'][0] / 2**20:.0f}, "
            f"reference {peaks['reference'][0] / 2**20:.0f}; "
            f"held after forward {peaks['gmsop'][1] / 2**20:.0f} / "
            f"{peaks['autograd'][1] / 2**20:.0f} / {peaks['reference'][1] / 2**20:.0f})",
        )
