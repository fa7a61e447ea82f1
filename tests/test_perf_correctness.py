"""The performance work changes nothing but speed: fused SOP layer and the mixture's execution paths.

* ``isqrt_cov`` is one fused Function with a symmetric backward; it must equal autograd through
  the same iteration,
  pass gradcheck in float64 (its input is the feature map, so general perturbations are the
  right test), keep less memory between forward and backward than autograd, and accept a
  position-major (transposed) map (channels-last storage) in its own layout.
* ``GatedMixture``'s grouped and generic paths give the same outputs, statistics and
  gradients; both compute only routed pairs (FLOPs follow K, not N); user components,
  subclasses with their own forward and components with BatchNorm or hooks are called as
  modules.
* On CUDA the forward of a gated SOP model makes no host-device synchronisation (skipped
  without a GPU).
"""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import gmsop
import gmsop.functional as functional
from gmsop.functional import EPS, _ns_backward, _ns_forward, covariance, isqrt_cov, triu_vector
from gmsop.layers import (
    GAP,
    GatedMixture,
    LinearExpert,
    NoisyTopKGate,
    ParametricGAP,
    ParametricSRSOP,
    gating_trunk,
)


def _plain_isqrt_cov(x, iterations):
    """The iteration with plain ops (Z0 = I multiplied out), differentiated by autograd."""
    x = x.flatten(2)
    xc = x - x.mean(dim=-1, keepdim=True)
    sigma = xc @ xc.transpose(1, 2) / x.shape[-1]
    eye = torch.eye(sigma.shape[-1], dtype=sigma.dtype).expand_as(sigma)
    norm = sigma.diagonal(dim1=-2, dim2=-1).sum(-1) + EPS
    y, z = sigma / norm[:, None, None], eye
    for _ in range(iterations):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return triu_vector(y * norm.sqrt()[:, None, None])


def _features(b, d, m, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, m, generator=g, dtype=dtype).relu_()


class TestFusedIsqrtCov:
    @pytest.mark.parametrize("iterations", [1, 2, 3, 5])
    @pytest.mark.parametrize("m", [4, 25])  # M < d (rank-deficient covariance) and M > d
    def test_equals_composition_and_autograd(self, iterations, m):
        x = _features(3, 9, m)
        grad = torch.randn(3, 45, dtype=torch.float64)
        outs, grads = [], []
        for fn in (lambda t: isqrt_cov(t, iterations), lambda t: _plain_isqrt_cov(t, iterations)):
            xi = x.clone().requires_grad_()
            out = fn(xi)
            out.backward(grad)
            outs.append(out.detach())
            grads.append(xi.grad)
        for o, g in zip(outs[1:], grads[1:]):
            torch.testing.assert_close(outs[0], o, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(grads[0], g, rtol=1e-8, atol=1e-11)

    @pytest.mark.parametrize("position_major", [False, True])
    def test_cpu_chunking_changes_nothing(self, monkeypatch, position_major):
        x = _features(7, 6, 10, seed=6)
        if position_major:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        grad = torch.randn(7, 21, dtype=torch.float64)
        results = []
        for per_thread in (10**9, 1):  # one chunk; chunks of 1-2 matrices (bytes per thread)
            monkeypatch.setattr(functional, "CPU_CHUNK_BYTES_PER_THREAD", per_thread)
            xi = x.detach().clone().requires_grad_()  # clone keeps the memory layout
            out = isqrt_cov(xi, 3)
            out.backward(grad)
            assert xi.grad.stride() == xi.stride()
            results.append((out.detach(), xi.grad))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)
        monkeypatch.setattr(functional, "CPU_CHUNK_BYTES_PER_THREAD", 1)
        assert torch.autograd.gradcheck(lambda t: isqrt_cov(t, 3), (x[:3].detach().clone().requires_grad_(),))

    def test_float32_results_are_bitwise_independent_of_the_chunk_size(self, monkeypatch):
        """The chunk size is sized by bytes (small matrices take larger chunks): the embedded
        default's numbers must not move with it, so float32 results are equal bit for bit."""
        torch.manual_seed(0)
        x = torch.randn(40, 32, 64)
        grad = torch.randn(40, 528)
        results = []
        for per_thread in (10**9, 8 * 32 * 32 * 4, 1):  # one chunk; 8 matrices; one matrix
            monkeypatch.setattr(functional, "CPU_CHUNK_BYTES_PER_THREAD", per_thread)
            xi = x.clone().requires_grad_()
            out = isqrt_cov(xi, 5)
            out.backward(grad)
            results.append((out.detach(), xi.grad))
        for out, g in results[1:]:
            assert torch.equal(out, results[0][0]) and torch.equal(g, results[0][1])

    @pytest.mark.parametrize("iterations", [3, 5])
    def test_gradcheck_float64(self, iterations):
        x = _features(2, 5, 7, seed=3).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: isqrt_cov(t, iterations), (x,))

    def test_position_major_and_4d_inputs(self):
        x = _features(2, 6, 12, seed=4)
        ref_x = x.clone().requires_grad_()
        ref = isqrt_cov(ref_x, 3)
        ref.sum().backward()
        pm = x.transpose(1, 2).contiguous().requires_grad_()  # (B, M, d) memory, used as (B, d, M)
        out = isqrt_cov(pm.transpose(1, 2), 3)
        out.sum().backward()
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(pm.grad.transpose(1, 2), ref_x.grad)
        torch.testing.assert_close(isqrt_cov(x.view(2, 6, 3, 4), 3), ref.detach())

    def test_holds_less_memory_than_autograd_between_forward_and_backward(self):
        x = _features(4, 32, 16, dtype=torch.float32).requires_grad_()

        def saved_bytes(fn):
            seen, total = set(), 0

            def pack(t):
                nonlocal total
                st = t.untyped_storage()
                if st.data_ptr() not in seen and t.data_ptr() != x.data_ptr():
                    seen.add(st.data_ptr())
                    total += st.nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                fn(x, 5)
            return total

        assert saved_bytes(isqrt_cov) < 0.7 * saved_bytes(_plain_isqrt_cov)

    def test_symmetric_backward_matches_autograd_on_symmetric_input(self):
        g = torch.Generator().manual_seed(5)
        x = torch.randn(3, 7, 20, generator=g, dtype=torch.float64)
        a = covariance(x)
        a = a / a.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
        gy = torch.randn(3, 7, 7, generator=g, dtype=torch.float64)
        gy = gy + gy.mT
        eye = torch.eye(7, dtype=torch.float64).expand_as(a)
        for iterations in (1, 2, 3, 4):
            ai = a.clone().requires_grad_()
            y, z = ai, eye
            for _ in range(iterations):
                t = 0.5 * (3 * eye - z @ y)
                y, z = y @ t, t @ z
            (general,) = torch.autograd.grad(y, ai, gy)
            sym = _ns_backward(gy.clone(), _ns_forward(a, iterations)[1], iterations)
            torch.testing.assert_close(sym + sym.mT, general + general.mT, rtol=1e-10, atol=1e-12)

    def test_backward_leaves_the_incoming_gradient_untouched(self):
        x = _features(2, 5, 9).requires_grad_()
        grad = torch.randn(2, 15, dtype=torch.float64)
        copy = grad.clone()
        isqrt_cov(x, 3).backward(grad)
        assert torch.equal(grad, copy)

    def test_autocast_keeps_float32(self):
        x = torch.randn(2, 16, 5, 5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = isqrt_cov(x.bfloat16(), 3)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, isqrt_cov(x.bfloat16().float(), 3))


def _mixture(kind, n=6, k=3, seed=0, bn=False):
    torch.manual_seed(seed)
    make = {
        "sop": lambda: ParametricSRSOP(8, dims=(8, 5), batchnorm=bn),
        "gap": lambda: ParametricGAP(8, 5),
        "linear": lambda: LinearExpert(8, 5),
    }[kind]
    gate = NoisyTopKGate(gating_trunk(8, GAP(8), [8, 8]), 8, n, k)
    with torch.no_grad():
        gate.w_gate.normal_(0, 3.0)
    return GatedMixture([make() for _ in range(n)], gate)


def _run(m, x, path):
    m.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    m.execution = path
    try:
        y, stats = m(x)
        (y.square().sum() + stats.balance_loss).backward()
    finally:
        m.execution = "auto"
    grads = {n: p.grad for n, p in m.named_parameters()}
    return y.detach(), stats, x.grad, grads


class TestMixturePaths:
    @pytest.mark.parametrize("kind", ["sop", "gap", "linear"])
    @pytest.mark.parametrize("train", [False, True])
    def test_paths_agree(self, kind, train):
        m = _mixture(kind).train(train)
        x = torch.randn(7, 8, 4, 4)
        results = {}
        for path in ("grouped", "generic"):
            torch.manual_seed(1)  # same gate noise in training mode
            results[path] = _run(m, x, path)
        y0, s0, gx0, g0 = results["grouped"]
        for path in ("generic",):
            y, s, gx, g = results[path]
            torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(gx, gx0, rtol=1e-5, atol=1e-6)
            for a, b in zip(s, s0):
                torch.testing.assert_close(a, b)
            for name, grad in g0.items():
                other = g[name]
                if grad is None:  # unused (the noise weights in eval mode)
                    assert other is None, name
                elif other is None:  # an unselected component: no gradient there, zero here
                    assert torch.all(grad == 0), name
                else:
                    torch.testing.assert_close(other, grad, rtol=1e-5, atol=1e-6)

    def test_default_paths(self):
        m = _mixture("sop")
        assert m.execution_path("cpu") == "generic" and m.execution_path("cuda") == "grouped"
        assert _mixture("sop", bn=True).execution_path("cuda") == "generic"  # per-component BN statistics
        with pytest.raises(ValueError, match="execution"):
            GatedMixture(list(m.components), m.gate, execution="fast")

    @pytest.mark.parametrize("path", ["grouped", "generic"])
    def test_unselected_components_get_no_or_zero_gradient(self, path):
        m = _mixture("gap", n=8, k=2).eval()
        m.execution = path
        y, stats = m(torch.randn(1, 8, 4, 4))
        y.sum().backward()
        for i, c in enumerate(m.components):
            g = c.conv.weight.grad
            if stats.counts[i] == 0:
                assert g is None or torch.all(g == 0)
            else:
                assert g is not None and torch.any(g != 0)

    @pytest.mark.parametrize("path", ["grouped", "generic"])
    def test_flops_follow_k_not_n(self, path):
        x = torch.randn(6, 8, 4, 4)
        flops = []
        for n in (4, 16):
            m = _mixture("sop", n=n, k=2).eval()
            m.execution = path
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                m(x)
            flops.append(counter.get_total_flops())
        assert flops[1] - flops[0] == 2 * 6 * 8 * (16 - 4)  # only the gate's (D x N) logits grow with N

    def test_user_component_class_runs_through_the_generic_path(self):
        class MaxExpert(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(8, 5)
                self.out_features = 5

            def forward(self, x):
                return self.lin(x.amax(dim=(2, 3)))

        torch.manual_seed(0)
        comps = [MaxExpert() for _ in range(4)]
        gate = NoisyTopKGate(gating_trunk(8, GAP(8), [8, 8]), 8, 4, 2)
        m = GatedMixture(comps, gate).eval()
        assert m.execution_path("cpu") == "generic"
        x = torch.randn(5, 8, 3, 3)
        y, _ = m(x)
        top_w, top_idx, _ = m.gate(x)
        ref = torch.stack(
            [
                sum(top_w[s, j] * comps[int(top_idx[s, j])](x[s : s + 1])[0] for j in range(2))
                for s in range(5)
            ]
        )
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)

    def test_subclass_with_its_own_forward_is_called_as_a_module(self):
        class Doubled(ParametricGAP):
            def forward(self, x):
                return 2.0 * super().forward(x)

        torch.manual_seed(0)
        comps = [Doubled(8, 5) for _ in range(4)]
        gate = NoisyTopKGate(gating_trunk(8, GAP(8), [8, 8]), 8, 4, 2)
        m = GatedMixture(comps, gate).eval()
        assert m.execution_path("cpu") == "generic"
        x = torch.randn(3, 8, 3, 3)
        y, _ = m(x)
        top_w, top_idx, _ = m.gate(x)
        ref = torch.stack(
            [
                sum(top_w[s, j] * comps[int(top_idx[s, j])](x[s : s + 1])[0] for j in range(2))
                for s in range(3)
            ]
        )
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)

    def test_batchnorm_components_use_their_own_statistics(self):
        m = _mixture("sop", bn=True).train()
        x = torch.randn(9, 8, 4, 4)
        y, stats = m(x)
        assert torch.isfinite(y).all()
        used = [i for i, c in enumerate(stats.counts) if c > 0]
        assert all(int(m.components[i].convs[1].num_batches_tracked) == 1 for i in used)

    def test_gm_sop_model_paths_agree(self):
        m = gmsop.build_model("GM-SOP-8-2", num_classes=10, width_mult=0.25).eval()
        x = torch.randn(3, 3, 32, 32)
        with torch.no_grad():
            outs = []
            for path in ("grouped", "generic"):
                m.head.execution = path
                outs.append(m(x).logits)
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("path", ["grouped", "generic"])
    def test_autocast_bf16_runs(self, path):
        m = _mixture("sop").eval()
        m.execution = path
        x = torch.randn(4, 8, 4, 4)
        with torch.no_grad():
            ref, _ = m(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y, _ = m(x)
        assert y.dtype == torch.float32 and torch.isfinite(y).all()
        torch.testing.assert_close(y, ref, rtol=0.1, atol=0.05)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", ["GM-SOP-16-8", "GM-GAP-16-8"])
def test_cuda_forward_makes_no_host_device_sync(variant):
    model = gmsop.build_model(variant, num_classes=100, width_mult=0.25).cuda().train()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    model(x)  # warm-up: lazily built indices, cuBLAS handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for amp in (False, True):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                out = model(x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert model.head.execution_path("cuda") == "grouped"
    (out.logits.float().sum() + out.balance_loss).backward()
