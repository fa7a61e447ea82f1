"""Second-order pooling as plain functions: covariance, Newton-Schulz square root, triangle.

``isqrt_cov(x, iterations=3)`` is iSQRT-COV (Li et al., CVPR 2018), the SR-SOP of the GM-SOP
paper (Eq. 5 with the iteration of Eq. 9):

    Sigma = X^T Jhat X            biased covariance of the d channels over M = H*W positions
    A     = Sigma / tr(Sigma)      pre-normalisation, so Newton-Schulz converges
    Y0 = A, Z0 = I;  T = (3I - Z Y) / 2;  Y <- Y T;  Z <- T Z      (``iterations`` times)
    C     = Y * sqrt(tr(Sigma))    post-compensation, restores the scale removed above
    out   = upper triangle of C, row-major, d(d+1)/2 values (no sqrt(2) scaling)

Precision: all of it runs in float32 (float64 if given float64) even under autocast; a
bfloat16 Newton-Schulz diverges. Zero input: tr(Sigma) is offset by ``EPS`` so an all-zero
feature map (a dead ReLU, a zero-padded image) gives C = 0 and finite gradients instead of NaN.
The square root is a ``torch.autograd.Function`` whose backward runs the iteration in reverse
(matrix back-propagation), storing only Y and Z per iteration instead of autograd's whole tape.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EPS", "covariance", "sqrtm_newton_schulz", "triu_vector", "isqrt_cov", "triu_dim"]

#: Added to tr(Sigma) before dividing by it (and before its square root). Small against any
#: real trace (activations are O(1) after BN), large enough to keep a zero map finite.
EPS = 1e-8


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def covariance(x: Tensor) -> Tensor:
    """Biased sample covariance of the channels: (B, C, H, W) or (B, C, M) -> (B, C, C).

    Sigma = (1/M) Xc Xc^T with Xc the channel-centred features, i.e. X^T Jhat X of Eq. 5 with
    Jhat = (I - 11^T/M)/M. Computed in float32 (or float64) regardless of autocast.
    """
    if x.dim() == 4:
        x = x.flatten(2)  # (B, C, H, W) -> (B, C, M)
    if x.dim() != 3:
        raise ValueError(f"covariance expects (B, C, H, W) or (B, C, M), got shape {tuple(x.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(_compute_dtype(x))
        m = x.shape[-1]
        xc = x - x.mean(dim=-1, keepdim=True)  # (B, C, M)
        return torch.bmm(xc, xc.transpose(1, 2)) / m  # (B, C, C)


def _eye_like(a: Tensor) -> Tensor:
    return torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)


def _trace(a: Tensor) -> Tensor:
    return a.diagonal(dim1=-2, dim2=-1).sum(-1)  # (B, d, d) -> (B,)


class _NewtonSchulzSqrtm(torch.autograd.Function):
    """Forward: pre-normalise, iterate, post-compensate. Backward: the same steps reversed.

    The backward is exact for any (also non-symmetric) input, so it equals autograd through
    the same iterations to rounding (checked by gradcheck in float64).
    """

    @staticmethod
    def forward(ctx, sigma: Tensor, iterations: int) -> Tensor:
        eye = _eye_like(sigma)
        norm = _trace(sigma) + EPS  # (B,)
        a = sigma / norm[:, None, None]  # (B, d, d)
        ys, zs = [a], [eye]  # Y_k, Z_k before iteration k
        y, z = a, eye
        for k in range(iterations):
            t = 0.5 * (3.0 * eye - torch.bmm(z, y))
            if k + 1 < iterations:
                y, z = torch.bmm(y, t), torch.bmm(t, z)
                ys.append(y)
                zs.append(z)
            else:  # the last step only needs Y
                y = torch.bmm(y, t)
        root = norm.sqrt()
        ctx.iterations = iterations
        ctx.save_for_backward(sigma, norm, y, *ys, *zs)
        return y * root[:, None, None]

    @staticmethod
    def backward(ctx, grad: Tensor):
        sigma, norm, y_last, *saved = ctx.saved_tensors
        n_it = ctx.iterations
        ys, zs = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        eye = _eye_like(sigma)
        root = norm.sqrt()
        # C = Y_J * sqrt(n)
        d_norm = (grad * y_last).sum(dim=(-2, -1)) * 0.5 / root  # (B,)
        d_y = grad * root[:, None, None]
        d_z = torch.zeros_like(d_y)
        for k in reversed(range(n_it)):
            y, z = ys[k], zs[k]
            t = 0.5 * (3.0 * eye - torch.bmm(z, y))
            # Y' = Y T ; Z' = T Z (Z' only when k is not the last step)
            d_t = torch.bmm(y.transpose(1, 2), d_y)
            new_d_y = torch.bmm(d_y, t.transpose(1, 2))
            if k + 1 < n_it:
                d_t = d_t + torch.bmm(d_z, z.transpose(1, 2))
                new_d_z = torch.bmm(t.transpose(1, 2), d_z)
            else:
                new_d_z = torch.zeros_like(d_y)
            # T = 1.5 I - 0.5 Z Y
            d_zy = -0.5 * d_t
            d_y = new_d_y + torch.bmm(z.transpose(1, 2), d_zy)
            d_z = new_d_z + torch.bmm(d_zy, y.transpose(1, 2))
        # Y_0 = A = Sigma / n ; Z_0 = I is constant
        d_a = d_y
        d_norm = d_norm - (d_a * sigma).sum(dim=(-2, -1)) / norm**2
        d_sigma = d_a / norm[:, None, None] + d_norm[:, None, None] * eye
        return d_sigma, None


def sqrtm_newton_schulz(sigma: Tensor, iterations: int = 3) -> Tensor:
    """Approximate matrix square root of SPD matrices (B, d, d) -> (B, d, d).

    Trace-normalised Newton-Schulz with post-compensation (see the module docstring);
    ``iterations`` is 3 in the authors' released code and 5 in the paper's text. Runs in
    float32 (or float64 for float64 input) even under autocast.
    """
    if sigma.dim() != 3 or sigma.shape[-1] != sigma.shape[-2]:
        raise ValueError(f"sqrtm_newton_schulz expects (B, d, d), got shape {tuple(sigma.shape)}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    with torch.autocast(device_type=sigma.device.type, enabled=False):
        return _NewtonSchulzSqrtm.apply(sigma.to(_compute_dtype(sigma)), int(iterations))


def triu_dim(d: int) -> int:
    """Length of the upper-triangle vector of a d x d matrix: d(d+1)/2 (8256 for d=128)."""
    return d * (d + 1) // 2


_TRIU_CACHE: dict[tuple[int, torch.device], Tensor] = {}


def _triu_flat_index(d: int, device: torch.device) -> Tensor:
    key = (d, device)
    if key not in _TRIU_CACHE:
        r, c = torch.triu_indices(d, d, device=device)
        _TRIU_CACHE[key] = r * d + c
    return _TRIU_CACHE[key]


def triu_vector(c: Tensor) -> Tensor:
    """Row-major upper triangle incl. the diagonal: (B, d, d) -> (B, d(d+1)/2)."""
    if c.dim() != 3 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"triu_vector expects (B, d, d), got shape {tuple(c.shape)}")
    d = c.shape[-1]
    return c.flatten(1).index_select(1, _triu_flat_index(d, c.device))  # (B, d*d) -> (B, d(d+1)/2)


def isqrt_cov(x: Tensor, iterations: int = 3) -> Tensor:
    """iSQRT-COV pooling: (B, d, H, W) -> (B, d(d+1)/2), float32 even under autocast."""
    return triu_vector(sqrtm_newton_schulz(covariance(x), iterations))
