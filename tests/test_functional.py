"""The second-order pooling functions against closed forms, scipy and autograd."""

import numpy as np
import pytest
import scipy.linalg
import torch

from gmsop.functional import covariance, isqrt_cov, triu_dim, triu_vector


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
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 16, 48, generator=g, dtype=torch.float64)
        ours = isqrt_cov(x, iterations=40)
        for xi, o in zip(x, ours):
            ref = scipy.linalg.sqrtm(np.cov(xi.numpy(), bias=True)).real[np.triu_indices(16)]
            rel = np.linalg.norm(o.numpy() - ref) / np.linalg.norm(ref)
            assert rel < 1e-4, rel

    def test_rejects_bad_arguments(self):
        with pytest.raises(ValueError, match="iterations"):
            isqrt_cov(torch.randn(1, 3, 9, dtype=torch.float64), 0)
        with pytest.raises(ValueError, match="shape"):
            isqrt_cov(torch.randn(2, 3), 3)


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
