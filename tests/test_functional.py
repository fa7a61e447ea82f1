"""The second-order pooling functions against closed forms, scipy and autograd."""

import numpy as np
import pytest
import scipy.linalg
import torch

from gmsop.functional import EPS, covariance, isqrt_cov, sqrtm_newton_schulz, triu_dim, triu_vector


def _spd(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, 3 * d, generator=g, dtype=dtype)
    return x @ x.transpose(1, 2) / (3 * d) + 0.5 * torch.eye(d, dtype=dtype)


def _autograd_reference(sigma, iterations):
    """The same iteration written naively, differentiated by autograd."""
    eye = torch.eye(sigma.shape[-1], dtype=sigma.dtype).expand_as(sigma)
    norm = sigma.diagonal(dim1=-2, dim2=-1).sum(-1) + EPS
    y, z = sigma / norm[:, None, None], eye
    for _ in range(iterations):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt()[:, None, None]


class TestCovariance:
    def test_matches_numpy_biased_covariance(self):
        x = torch.randn(3, 5, 4, 6, dtype=torch.float64)
        ref = np.stack([np.cov(xi.reshape(5, -1).numpy(), bias=True) for xi in x])
        np.testing.assert_allclose(covariance(x).numpy(), ref, rtol=1e-12, atol=1e-12)

    def test_accepts_flattened_input_and_rejects_bad_rank(self):
        x = torch.randn(2, 4, 10)
        assert covariance(x).shape == (2, 4, 4)
        with pytest.raises(ValueError, match="shape"):
            covariance(torch.randn(4, 10))


class TestNewtonSchulz:
    def test_converges_to_scipy_sqrtm(self):
        sigma = _spd(4, 16, seed=0)
        ours = sqrtm_newton_schulz(sigma, iterations=40)
        for s, o in zip(sigma, ours):
            ref = scipy.linalg.sqrtm(s.numpy()).real
            rel = np.linalg.norm(o.numpy() - ref) / np.linalg.norm(ref)
            assert rel < 1e-4, rel

    @pytest.mark.parametrize("iterations", [3, 5])
    def test_handwritten_backward_passes_gradcheck(self, iterations):
        sigma = _spd(2, 6, seed=1).requires_grad_()
        assert torch.autograd.gradcheck(lambda s: sqrtm_newton_schulz(s, iterations), (sigma,))

    @pytest.mark.parametrize("iterations", [1, 3, 5])
    def test_backward_equals_autograd_through_iterations(self, iterations):
        sigma = _spd(3, 8, seed=2)
        grad = torch.randn(3, 8, 8, dtype=torch.float64)
        a = sigma.clone().requires_grad_()
        b = sigma.clone().requires_grad_()
        out_a = sqrtm_newton_schulz(a, iterations)
        out_b = _autograd_reference(b, iterations)
        torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-12)
        (out_a * grad).sum().backward()
        (out_b * grad).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)

    def test_output_is_symmetric(self):
        out = sqrtm_newton_schulz(_spd(2, 10, seed=3).float(), 5)
        torch.testing.assert_close(out, out.transpose(1, 2), rtol=1e-5, atol=1e-6)

    def test_rejects_bad_arguments(self):
        with pytest.raises(ValueError, match="iterations"):
            sqrtm_newton_schulz(_spd(1, 3, 0), 0)
        with pytest.raises(ValueError, match="shape"):
            sqrtm_newton_schulz(torch.randn(2, 3, 4), 3)


class TestTriu:
    def test_row_major_upper_triangle(self):
        c = torch.arange(9.0).reshape(1, 3, 3)
        assert triu_vector(c).tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]
        assert triu_dim(128) == 8256


class TestIsqrtCov:
    def test_shape_and_value(self):
        x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
        out = isqrt_cov(x, iterations=30)
        assert out.shape == (2, 36)
        ref = scipy.linalg.sqrtm(np.cov(x[0].reshape(8, -1).numpy(), bias=True)).real
        np.testing.assert_allclose(out[0].numpy(), ref[np.triu_indices(8)], rtol=1e-3, atol=1e-4)

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
    def test_autocast_input_gives_float32_finite_output(self, dtype):
        x = torch.randn(2, 16, 4, 4)
        with torch.autocast("cpu", dtype=dtype):
            out = isqrt_cov(x.to(dtype), iterations=3)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()

    def test_all_zero_feature_map_is_finite_with_finite_gradient(self):
        x = torch.zeros(2, 8, 4, 4, requires_grad=True)
        out = isqrt_cov(x, iterations=5)
        assert torch.isfinite(out).all() and out.abs().max() == 0
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
