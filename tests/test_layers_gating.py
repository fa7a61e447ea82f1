"""The sparsity-constrained gate, the balance loss and the sparse gated mixture."""

import pytest
import torch
from torch import nn

from gmsop.layers import (
    GAP,
    AverageMixture,
    GatedMixture,
    NoisyTopKGate,
    ParametricGAP,
    ParametricSRSOP,
    cv_squared,
    gating_trunk,
)


def _mixture(n=6, k=2, alpha=100.0, per_batch=True, noise="per_image", sop=False, seed=0):
    torch.manual_seed(seed)
    comps = [ParametricSRSOP(8, dims=(8, 4)) if sop else ParametricGAP(8, 5) for _ in range(n)]
    gate = NoisyTopKGate(gating_trunk(8, GAP(8), [8, 8]), 8, n, k, noise=noise)
    with torch.no_grad():  # spread the gate so routing differs between samples
        gate.w_gate.normal_(0, 3.0)
    return GatedMixture(comps, gate, alpha=alpha, alpha_per_batch=per_batch)


class _TrunkPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def _gate(n=6, k=2, noise="per_image"):
    g = NoisyTopKGate(nn.Sequential(nn.Conv2d(8, 8, 1), _TrunkPool()), 8, n, k, noise=noise)
    with torch.no_grad():
        g.w_gate.normal_(0, 3.0)
    return g


class TestNoisyTopKGate:
    @pytest.mark.parametrize("noise", ["per_image", "per_logit"])
    def test_exactly_k_nonzero_weights_summing_to_one(self, noise):
        gate = _gate(n=7, k=3, noise=noise).train()
        top_w, top_idx, dense = gate(torch.randn(16, 8, 4, 4))
        assert ((dense > 0).sum(dim=1) == 3).all()
        torch.testing.assert_close(dense.sum(dim=1), torch.ones(16))
        torch.testing.assert_close(dense.gather(1, top_idx), top_w)

    def test_eval_is_deterministic_and_noise_free(self):
        gate = _gate()
        x = torch.randn(5, 8, 4, 4)
        gate.eval()
        a, b = gate(x)[2], gate(x)[2]
        assert torch.equal(a, b)
        clean = torch.nn.functional.linear(gate.trunk(x), gate.w_gate)
        torch.testing.assert_close(gate.route(x)[0], clean)

    def test_training_noise_follows_eq2(self):
        gate = _gate(n=4, k=2, noise="per_image").train()
        x = torch.randn(3, 8, 4, 4)
        f = gate.trunk(x)
        clean = f @ gate.w_gate.T
        scale = torch.nn.functional.softplus(f @ gate.w_noise.T)
        torch.manual_seed(5)
        h = gate.route(x)[0]
        torch.manual_seed(5)
        gamma = torch.randn(3, 1)  # one gamma per image, shared by the N logits
        torch.testing.assert_close(h, clean + gamma * scale)

    def test_no_noise_ablation_has_clean_training_logits_and_no_noise_weights(self):
        gate = _gate(n=4, k=2, noise="none").train()
        x = torch.randn(3, 8, 4, 4)
        torch.testing.assert_close(gate.route(x)[0], gate.trunk(x) @ gate.w_gate.T)
        assert gate.w_noise is None and "w_noise" not in dict(gate.named_parameters())

    def test_constant_initialisation(self):
        g = NoisyTopKGate(_TrunkPool(), 10, 4, 2)
        assert torch.all(g.w_gate == 0.1) and torch.all(g.w_noise == 0.1)

    def test_initial_tie_is_broken_at_random_per_image(self):
        # At init every logit of a row is equal; a positional tie-break (torch.topk's) would send
        # every image to the same K components and the other N-K would never train.
        torch.manual_seed(0)
        gate = NoisyTopKGate(gating_trunk(8, GAP(8), [8, 8]), 8, 16, 8).train()
        top_w, top_idx, dense = gate(torch.randn(64, 8, 4, 4))
        counts = torch.bincount(top_idx.flatten(), minlength=16)
        assert (counts > 0).all(), counts  # P(some component unused) ~ 16 * 2**-64
        assert len({tuple(sorted(r)) for r in top_idx.tolist()}) > 32  # not one shared set
        torch.testing.assert_close(top_w, torch.full((64, 8), 1 / 8))  # equal weights on a tie
        assert ((dense > 0).sum(dim=1) == 8).all()

    def test_random_tie_break_keeps_the_largest_logits(self):
        gate = _gate(n=6, k=3).train()
        h = torch.tensor([[0.0, 2.0, 1.0, 1.0, 1.0, -1.0]]).repeat(200, 1)
        vals, idx = gate.select(h)
        torch.testing.assert_close(vals, torch.tensor([[2.0, 1.0, 1.0]]).repeat(200, 1))
        assert (idx == 1).any(dim=1).all()  # the strict maximum is always kept
        assert set(idx.flatten().tolist()) == {1, 2, 3, 4}  # all tied candidates are drawn
        gate.eval()
        a, b = gate.select(h), gate.select(h)
        assert torch.equal(a[1], b[1])  # evaluation is deterministic

    def test_unselected_logits_get_no_gradient(self):
        gate = _gate(n=6, k=2).eval()
        x = torch.randn(1, 8, 4, 4)
        h = gate.route(x)[0].detach().requires_grad_()
        vals, idx = h.topk(2, dim=1)
        torch.softmax(vals, dim=1)[0, 0].backward()
        mask = torch.zeros(6, dtype=torch.bool)
        mask[idx[0]] = True
        assert torch.all(h.grad[0, ~mask] == 0) and torch.any(h.grad[0, mask] != 0)

    @pytest.mark.parametrize("n,k", [(4, 0), (4, 5)])
    def test_impossible_k_is_a_clear_error(self, n, k):
        with pytest.raises(ValueError, match="K"):
            NoisyTopKGate(_TrunkPool(), 8, n, k)


class TestGateSpread:
    """The routing diagnostics: spread over the N components of the clean logits and of the
    noise scale, per image, averaged over the batch."""

    def test_spreads_are_the_batch_mean_of_per_image_stds(self):
        gate = _gate(n=5, k=2)
        with torch.no_grad():
            gate.w_noise.normal_(0, 1.0)
        x = torch.randn(6, 8, 4, 4)
        f = gate.trunk(x)
        clean = f @ gate.w_gate.T
        scale = torch.nn.functional.softplus(f @ gate.w_noise.T)
        *_, spread = gate.train().forward_with_spread(x)
        # in training the noisy logits select, but the spread is that of the clean ones
        torch.testing.assert_close(spread.logit, clean.std(dim=1, unbiased=False).mean())
        torch.testing.assert_close(spread.noise, scale.std(dim=1, unbiased=False).mean())
        assert not spread.logit.requires_grad
        # evaluation does not compute W_n f (no noise there): the clean spread only
        *_, spread = gate.eval().forward_with_spread(x)
        torch.testing.assert_close(spread.logit, clean.std(dim=1, unbiased=False).mean())
        assert spread.noise is None

    def test_constant_init_has_zero_spread_and_no_noise_gate_zero_noise(self):
        init = NoisyTopKGate(nn.Sequential(nn.Conv2d(8, 8, 1), _TrunkPool()), 8, 6, 2)
        *_, spread = init.train().forward_with_spread(torch.randn(4, 8, 4, 4))
        assert float(spread.logit) == pytest.approx(0.0, abs=1e-6) and float(spread.noise) == pytest.approx(
            0.0, abs=1e-6
        )
        *_, spread = _gate(noise="none").train().forward_with_spread(torch.randn(4, 8, 4, 4))
        assert float(spread.logit) > 0 and float(spread.noise) == 0.0

    def test_mixture_reports_the_gate_spread(self):
        m = _mixture(n=6, k=2, noise="none")
        x = torch.randn(5, 8, 4, 4)
        _, stats = m(x)
        *_, spread = m.gate.forward_with_spread(x)
        torch.testing.assert_close(stats.logit_spread, spread.logit)
        torch.testing.assert_close(stats.noise_spread, spread.noise)


class TestBalanceLoss:
    def test_equals_eq4_computed_independently(self):
        w = torch.softmax(torch.randn(10, 5), dim=1)
        imp = [float(sum(w[s, i] for s in range(10))) for i in range(5)]
        mean = sum(imp) / 5
        std = (sum((v - mean) ** 2 for v in imp) / 4) ** 0.5  # unbiased
        assert float(100.0 * cv_squared(w.sum(dim=0))) == pytest.approx(100.0 * (std / mean) ** 2, rel=1e-5)

    def test_alpha_zero_gives_zero(self):
        m = _mixture(alpha=0.0).train()
        _, stats = m(torch.randn(8, 8, 4, 4))
        assert float(stats.balance_loss.detach()) == 0.0

    def test_alpha_per_batch_scaling(self):
        x = torch.randn(8, 8, 4, 4)
        a = _mixture(alpha=100.0, per_batch=True).eval()
        b = _mixture(alpha=100.0, per_batch=False).eval()
        la, lb = a(x)[1].balance_loss.detach(), b(x)[1].balance_loss.detach()
        assert float(la) == pytest.approx(float(lb) / 8, rel=1e-6)


class TestGatedMixture:
    @pytest.mark.parametrize("execution", ["grouped", "generic"])
    @pytest.mark.parametrize("sop", [False, True])
    def test_output_is_weighted_sum_of_selected_components(self, sop, execution):
        m = _mixture(sop=sop).eval()
        m.execution = execution
        x = torch.randn(6, 8, 4, 4)
        y, _ = m(x)
        top_w, top_idx, _ = m.gate(x)
        ref = torch.stack(
            [
                sum(top_w[s, j] * m.components[int(top_idx[s, j])](x[s : s + 1])[0] for j in range(m.k))
                for s in range(6)
            ]
        )
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)

    def test_components_run_only_on_routed_samples(self):
        """Hooks on a component send the mixture down its generic path (each component called on
        its own samples), so they observe what was computed; the grouped path's sparsity is
        checked by FLOP counts in test_perf_correctness.py."""
        m = _mixture(n=6, k=2, sop=True).train()
        seen = [0] * 6
        for i, c in enumerate(m.components):
            c.convs.register_forward_hook(
                lambda mod, inp, out, i=i: seen.__setitem__(i, seen[i] + inp[0].shape[0])
            )
        x = torch.randn(10, 8, 4, 4)
        _, stats = m(x)
        assert sum(seen) == 10 * 2  # B * K component evaluations, not B * N
        assert seen == [int(c) for c in stats.counts]

    def test_unselected_components_get_zero_gradient(self):
        m = _mixture(n=8, k=2).eval()
        x = torch.randn(1, 8, 4, 4)  # one sample: exactly K components are selected
        y, stats = m(x)
        y.sum().backward()
        for i, c in enumerate(m.components):
            g = c.conv.weight.grad
            if stats.counts[i] == 0:
                assert g is None or torch.all(g == 0)
            else:
                assert g is not None and torch.any(g != 0)

    @pytest.mark.parametrize("execution", ["grouped", "generic"])
    def test_float64_mixture_gradients_match_finite_differences(self, execution):
        # The gate computes in float32 at least, float64 in a float64 model, so a mixture can be
        # checked in double precision like the SOP layer (routing is fixed in eval mode).
        m = _mixture(n=4, k=2, sop=True).double().eval()
        m.execution = execution
        x = torch.randn(3, 8, 4, 4, dtype=torch.float64, requires_grad=True)
        y, stats = m(x)
        assert y.dtype == stats.balance_loss.dtype == torch.float64
        torch.autograd.gradcheck(lambda t: m(t)[0], (x,))
        torch.autograd.gradcheck(lambda t: m(t)[1].balance_loss, (x,))

    def test_counts_and_importance(self):
        m = _mixture(n=5, k=3).train()
        _, stats = m(torch.randn(12, 8, 4, 4))
        assert float(stats.counts.sum()) == 12 * 3
        assert float(stats.importance.sum()) == pytest.approx(12.0, rel=1e-5)


class TestAverageMixture:
    def test_average_of_components(self):
        comps = [ParametricGAP(8, 5) for _ in range(3)]
        m = AverageMixture(comps)
        x = torch.randn(4, 8, 3, 3)
        torch.testing.assert_close(m(x), sum(c(x) for c in comps) / 3)

    def test_mismatched_widths_are_refused(self):
        with pytest.raises(ValueError, match="out_features"):
            AverageMixture([ParametricGAP(8, 5), ParametricGAP(8, 6)])


@pytest.mark.parametrize("module", ["gap", "sop", "gating", "mixture", "grouped"])
def test_each_layer_module_imports_alone(module):
    """No import cycle: the components and the mixture share GroupedPlan from grouped.py."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", f"import gmsop.layers.{module}"], check=True, capture_output=True)


def test_grouped_plans_of_the_builtin_components():
    from gmsop.layers import GroupedPlan, LinearExpert

    x = torch.randn(2, 8, 3, 3)
    for component in (ParametricGAP(8, 5), ParametricSRSOP(8, (6, 4)), LinearExpert(8, 5)):
        plan = component.grouped_plan()
        assert isinstance(plan, GroupedPlan)
        h = plan.pre_pool(x) if plan.pre_pool is not None else x.flatten(2)
        for w, b in zip(plan.weights, plan.biases):
            h = w @ h + (b[:, None] if b is not None else 0)
            h = h.relu() if plan.relu else h
        y = plan.post_pool(h) if plan.post_pool is not None else h.flatten(1)
        torch.testing.assert_close(y, component(x))
    assert ParametricSRSOP(8, (6, 4), batchnorm=True).grouped_plan() is None  # per-component BN statistics
