"""Reference re-implementation of fast-MPN-COV's algorithm (iSQRT-COV, Li et al., CVPR 2018).

NOT the public code and NOT part of the package: a from-scratch re-implementation, for the
benchmarks only, of the algorithm that jiangtaoxie/fast-MPN-COV (src/representation/MPNCOV.py)
publishes as three ``torch.autograd.Function``s with hand-written backward passes:

* ``Covpool``  Sigma = X Ihat X^T with the (M, M) centring matrix Ihat = (I - 11^T/M)/M,
               repeated over the batch and applied as a matrix product (forward and backward).
* ``Sqrtm``    trace pre-normalisation, the coupled Newton-Schulz iteration with the first
               step special-cased (Z0 = I), all Y_k and Z_k stored in (B, J, d, d) buffers, the
               last step computed as Y T without Z, post-compensation by sqrt(trace); backward:
               the matrix back-propagation of the paper (Eq. for dL/dY_k, dL/dZ_k, written for
               symmetric commuting Y, Z), then the trace terms; the result is transposed.
* ``Triuvec``  the row-major upper triangle, its index recomputed from a triangular mask on
               every call; backward scatters into a zero (B, d*d) matrix.

Numerics equal ``gmsop.functional.isqrt_cov`` up to gmsop's ``EPS`` (1e-8 added to the trace),
i.e. to ~1e-10 relative for any real input; the benchmarks check outputs and gradients.

To benchmark against the public file itself (never copied into this repository), point
``GMSOP_MPNCOV_FILE`` at a checkout's ``src/representation/MPNCOV.py``: :func:`load_reference`
then imports it from there and chains its ``CovpoolLayer``, ``SqrtmLayer`` and ``TriuvecLayer``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd import Function

from gmsop.plugins import load_plugins

__all__ = ["RefCovpool", "RefSqrtm", "RefTriuvec", "reference_isqrt_cov", "load_reference"]


class RefCovpool(Function):
    @staticmethod
    def forward(ctx, feats: Tensor) -> Tensor:
        b, d = feats.shape[:2]
        m = feats[0, 0].numel()
        x = feats.reshape(b, d, m)
        ones = torch.ones(m, m, device=x.device, dtype=x.dtype)
        eye = torch.eye(m, device=x.device, dtype=x.dtype)
        centring = (eye / m - ones / (m * m)).unsqueeze(0).repeat(b, 1, 1)  # (B, M, M)
        ctx.save_for_backward(feats, centring)
        return x.bmm(centring).bmm(x.transpose(1, 2))  # (B, d, d)

    @staticmethod
    def backward(ctx, grad: Tensor):
        feats, centring = ctx.saved_tensors
        b, d = feats.shape[:2]
        x = feats.reshape(b, d, -1)
        g = grad + grad.transpose(1, 2)
        return g.bmm(x).bmm(centring).reshape(feats.shape)


class RefSqrtm(Function):
    @staticmethod
    def forward(ctx, sigma: Tensor, iterations: int) -> Tensor:
        b, d = sigma.shape[:2]
        eye3 = 3.0 * torch.eye(d, device=sigma.device, dtype=sigma.dtype).unsqueeze(0).repeat(b, 1, 1)
        norm = (sigma * eye3).sum(dim=(1, 2)) / 3.0  # trace
        a = sigma / norm.view(b, 1, 1)
        ys = torch.zeros(b, iterations, d, d, device=sigma.device, dtype=sigma.dtype)
        zs = torch.eye(d, device=sigma.device, dtype=sigma.dtype).view(1, 1, d, d).repeat(b, iterations, 1, 1)
        if iterations < 2:
            t = 0.5 * (eye3 - a)
            y_last = a.bmm(t)
        else:
            t = 0.5 * (eye3 - a)
            ys[:, 0] = a.bmm(t)
            zs[:, 0] = t
            for i in range(1, iterations - 1):
                t = 0.5 * (eye3 - zs[:, i - 1].bmm(ys[:, i - 1]))
                ys[:, i] = ys[:, i - 1].bmm(t)
                zs[:, i] = t.bmm(zs[:, i - 1])
            y_last = 0.5 * ys[:, iterations - 2].bmm(eye3 - zs[:, iterations - 2].bmm(ys[:, iterations - 2]))
        ctx.iterations = iterations
        ctx.save_for_backward(sigma, a, y_last, norm, ys, zs)
        return y_last * norm.sqrt().view(b, 1, 1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        sigma, a, y_last, norm, ys, zs = ctx.saved_tensors
        n_it = ctx.iterations
        b, d = sigma.shape[:2]
        root = norm.sqrt().view(b, 1, 1)
        d_norm_post = (grad * y_last).sum(dim=(1, 2)) / (2.0 * root.view(b))
        d_post = grad * root
        eye3 = 3.0 * torch.eye(d, device=sigma.device, dtype=sigma.dtype).unsqueeze(0).repeat(b, 1, 1)
        if n_it < 2:
            d_a = 0.5 * (d_post.bmm(eye3 - a) - a.bmm(d_post))
        else:
            y, z = ys[:, n_it - 2], zs[:, n_it - 2]
            d_y = 0.5 * (d_post.bmm(eye3 - y.bmm(z)) - z.bmm(y).bmm(d_post))
            d_z = -0.5 * y.bmm(d_post).bmm(y)
            for i in range(n_it - 3, -1, -1):
                y, z = ys[:, i], zs[:, i]
                yz = eye3 - y.bmm(z)
                zy = z.bmm(y)
                new_d_y = 0.5 * (d_y.bmm(yz) - z.bmm(d_z).bmm(z) - zy.bmm(d_y))
                new_d_z = 0.5 * (yz.bmm(d_z) - y.bmm(d_y).bmm(y) - d_z.bmm(zy))
                d_y, d_z = new_d_y, new_d_z
            d_a = 0.5 * (d_y.bmm(eye3 - a) - d_z - a.bmm(d_y))
        d_a = d_a.transpose(1, 2)
        grad_in = d_a / norm.view(b, 1, 1)
        d_trace = (d_a * sigma).sum(dim=(1, 2))
        eye = torch.eye(d, device=sigma.device, dtype=sigma.dtype)
        for i in range(b):
            grad_in[i] += (d_norm_post[i] - d_trace[i] / (norm[i] * norm[i])) * eye
        return grad_in, None


class RefTriuvec(Function):
    @staticmethod
    def forward(ctx, c: Tensor) -> Tensor:
        b, d = c.shape[:2]
        flat = c.reshape(b, d * d)
        index = torch.ones(d, d).triu().reshape(d * d).nonzero().flatten().to(c.device)
        ctx.save_for_backward(c, index)
        return flat[:, index]

    @staticmethod
    def backward(ctx, grad: Tensor):
        c, index = ctx.saved_tensors
        b, d = c.shape[:2]
        out = torch.zeros(b, d * d, device=c.device, dtype=grad.dtype)
        out[:, index] = grad
        return out.reshape(b, d, d)


def reference_isqrt_cov(x: Tensor, iterations: int = 3) -> Tensor:
    """(B, d, H, W) -> (B, d(d+1)/2): Covpool -> Sqrtm -> Triuvec, as fast-MPN-COV chains them."""
    return RefTriuvec.apply(RefSqrtm.apply(RefCovpool.apply(x), iterations))


def load_reference() -> tuple[Callable[[Tensor, int], Tensor], str]:
    """The reference to benchmark against and a description of it.

    ``GMSOP_MPNCOV_FILE`` set: the public fast-MPN-COV ``MPNCOV.py`` at that path, imported as a
    module (its ``TriuvecLayer`` returns (B, n, 1); squeezed to (B, n)). Unset: the
    re-implementation above.
    """
    path = os.environ.get("GMSOP_MPNCOV_FILE")
    if not path:
        return reference_isqrt_cov, "fast-MPN-COV re-implementation (benchmarks/mpncov_reference.py)"
    mod = load_plugins([path])[0]  # gmsop's import-a-.py-file-by-path (errors name the path)

    def public(x: Tensor, iterations: int = 3) -> Tensor:
        return mod.TriuvecLayer(mod.SqrtmLayer(mod.CovpoolLayer(x), iterations)).squeeze(-1)

    return public, f"public fast-MPN-COV file {path}"
