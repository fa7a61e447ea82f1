"""Second-order pooling: covariance, Newton-Schulz square root and triangle as one fused function.

``isqrt_cov(x, iterations=3)`` is iSQRT-COV (Li et al., CVPR 2018), the paper's SR-SOP (Eq. 5, 9):
Sigma = biased channel covariance over M = H*W positions; A = Sigma / tr(Sigma); Newton-Schulz
Y0 = A, Z0 = I, T = (3I - ZY)/2, Y <- YT, Z <- TZ; C = Y sqrt(tr(Sigma)); out = row-major upper
triangle of C, d(d+1)/2 values. Runs in float32 (float64 if given) even under autocast (bfloat16
Newton-Schulz diverges); tr(Sigma) is offset by ``EPS`` so a zero map gives C = 0, not NaN.
A hand-written backward (the exact adjoint, gradcheck-tested) saves memory and matmuls; see benchmarks/.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Added to tr(Sigma) before dividing by it: small against any real trace, keeps a zero map finite.
EPS = 1e-8


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def covariance(x: Tensor) -> Tensor:
    """Biased channel covariance (1/M) Xc Xc^T: (B, C, H, W) or (B, C, M) -> (B, C, C), float32+."""
    if x.dim() == 4:
        x = x.flatten(2)  # (B, C, H, W) -> (B, C, M)
    if x.dim() != 3:
        raise ValueError(f"covariance expects (B, C, H, W) or (B, C, M), got shape {tuple(x.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(_compute_dtype(x))
        m = x.shape[-1]
        xc = x - x.mean(dim=-1, keepdim=True)  # (B, C, M)
        return torch.baddbmm(xc.new_zeros(()), xc, xc.transpose(1, 2), beta=0.0, alpha=1.0 / m)  # (B, C, C)


def _add_diag_(a: Tensor, value) -> Tensor:
    """a += value * I in place; ``value`` a number or a (B,) tensor."""
    diag = a.diagonal(dim1=-2, dim2=-1)
    diag.add_(value[:, None] if isinstance(value, Tensor) else value)
    return a


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-matrix Frobenius inner product <a, b>: (B, ...) x (B, ...) -> (B,)."""
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def _t0(a: Tensor) -> Tensor:
    return _add_diag_(a.mul(-0.5), 1.5)  # T0 = (3I - A)/2 = Z1; recomputed in the backward, not saved


def _ns_forward(a: Tensor, iterations: int) -> tuple[Tensor, list[Tensor | None]]:
    """Newton-Schulz on A (B, d, d) in 3J - 3 matmuls: Y_J and what the backward needs.

    Saved: [A, Y1, None, T1, Y2, Z2, T2, ..., Y_{J-1}, None, T_{J-1}]; Z1 = T0 is recomputed from A,
    Z_{J-1} is not needed.
    """
    t0 = _t0(a)
    y, z = torch.bmm(a, t0), t0  # Y1 = A T0, Z1 = T0
    saved: list[Tensor | None] = [a]
    for k in range(1, iterations):
        t = _add_diag_(torch.baddbmm(z.new_zeros(()), z, y, beta=0.0, alpha=-0.5), 1.5)  # 1.5 I - 0.5 Z_k Y_k
        last = k + 1 == iterations
        saved += [y, None if k == 1 or last else z, t]
        if not last:
            y, z = torch.bmm(y, t), torch.bmm(t, z)
        else:  # the last step only needs Y
            y = torch.bmm(y, t)
    return y, saved


def _ns_backward(gy: Tensor, saved: list[Tensor | None], iterations: int) -> Tensor:
    """Reverse of ``_ns_forward`` for symmetric ``gy`` and A (every Y, Z, T then commute): cotangent
    of Y_J -> cotangent of A, of which only the symmetric part is meaningful (the caller symmetrises
    it; this saves one matmul in the first and last steps). ``gy`` is overwritten."""
    a = saved[0]
    gz = None
    for k in range(iterations - 1, 0, -1):
        y, z, t = saved[3 * k - 2 : 3 * k + 1]  # Y_k, Z_k, T_k ;  Y_{k+1} = Y_k T_k,  Z_{k+1} = T_k Z_k
        if k == 1:
            z = _t0(a)
        if gz is None:  # last step: Y_J = Y T only
            gt = torch.bmm(y.mT, gy)  # dL/dT = Y^T Gy
            q = torch.bmm(gy, t)
            new_gy = gy.mul_(-1.5).add_(q).add_(q.mT)  # Gy T + T Gy - 1.5 Gy
            new_gz = q.baddbmm_(gt, y.mT, beta=0.0, alpha=-0.5)  # -dT Y / 2
        else:
            gt = torch.bmm(y.mT, gy).baddbmm_(gz, z.mT)  # dL/dT = Y^T Gy + Gz Z^T
            new_gy = torch.bmm(gy, t.mT).baddbmm_(z.mT, gt, alpha=-0.5)  # Gy T^T - Z^T dT / 2
            new_gz = gy.baddbmm_(t.mT, gz, beta=0.0).baddbmm_(gt, y.mT, alpha=-0.5)  # T^T Gz - dT Y^T / 2
        gy, gz = new_gy, new_gz  # dead buffers are reused
        del gt, new_gy, new_gz, y, z, t
    # first step: Y1 = A T0, Z1 = T0 = 1.5 I - 0.5 A  (Z0 = I is constant):
    # sym(Gy T0 - A Gy / 2 - Gz / 2) = sym(1.5 Gy - Gy A - Gz / 2)
    if gz is None:
        return torch.baddbmm(gy, gy, a, beta=1.5, alpha=-1.0)
    return gz.baddbmm_(gy, a, beta=-0.5, alpha=-1.0).add_(gy, alpha=1.5)


def triu_dim(d: int) -> int:
    """Length of the upper-triangle vector of a d x d matrix: d(d+1)/2 (8256 for d=128)."""
    return d * (d + 1) // 2


_TRIU_CACHE: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}


def _triu_tables(d: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Row-major positions (d(d+1)/2,) of the upper triangle in the flattened d x d matrix, and the
    (index (d*d,), weight (d(d+1)/2,)) with which ``(g * weight)[:, index]`` is sym(U) for the
    upper-triangular U holding the triangle vector g. Cached in eager mode only: under ``torch.compile``
    a Function may not mutate outside state, and ``triu_indices`` constant-folds."""
    key = (d, device, dtype)
    if key in _TRIU_CACHE and not torch.compiler.is_compiling():
        return _TRIU_CACHE[key]
    r, c = torch.triu_indices(d, d, device=device)
    pos = torch.empty(d, d, dtype=torch.long, device=device)
    pos[r, c] = torch.arange(r.numel(), device=device)
    pos[c, r] = pos[r, c]
    tables = (r * d + c, pos.flatten(), torch.where(r == c, 1.0, 0.5).to(dtype))
    if not torch.compiler.is_compiling():
        _TRIU_CACHE[key] = tables
    return tables


def triu_vector(c: Tensor) -> Tensor:
    """Row-major upper triangle incl. the diagonal: (B, d, d) -> (B, d(d+1)/2)."""
    if c.dim() != 3 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"triu_vector expects (B, d, d), got shape {tuple(c.shape)}")
    d = c.shape[-1]
    return c.flatten(1).index_select(1, _triu_tables(d, c.device, c.dtype)[0])  # (B, d*d) -> (B, d(d+1)/2)


#: On the CPU the batch is processed in chunks of about this many bytes of one (d, d) operand per
#: thread, so operands stay in cache between matmuls (~25% faster at d=128, ~20% at d=32;
#: benchmarks/). Each matrix is computed alone, so results do not depend on the chunking.
CPU_CHUNK_BYTES_PER_THREAD = 8 * 128 * 128 * 4


def _chunks(x: Tensor) -> list[tuple[int, int]]:
    """(start, end) of each chunk of the batch; one chunk off the CPU. Under ``torch.compile`` the
    chunk is sized for one thread (Dynamo cannot trace ``torch.get_num_threads()``)."""
    b = x.shape[0]
    if x.device.type == "cpu":
        per_matrix = x.shape[1] * x.shape[1] * x.element_size()
        size = max(CPU_CHUNK_BYTES_PER_THREAD // per_matrix, 1)
        if not torch.compiler.is_compiling():
            size *= max(int(torch.get_num_threads()), 1)
    else:
        size = max(int(b), 1)
    return [(start, min(start + size, b)) for start in range(0, b, size)]


class _ISqrtCov(torch.autograd.Function):
    """covariance -> Newton-Schulz -> triangle as one Function: (B, d, M) -> (B, d(d+1)/2).

    Saves the input and its channel means (the centred copy is rebuilt in the backward), the
    iteration's matrices, the trace and the output. The covariance is symmetric, so the backward
    starts from the symmetrised triangle gradient and runs the symmetric ``_ns_backward``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, iterations: int) -> Tensor:
        b, d, m = x.shape
        mean = x.mean(dim=-1, keepdim=True)  # (B, d, 1)
        norm = x.new_empty(b)
        out = x.new_empty(b, triu_dim(d))
        index = _triu_tables(d, x.device, x.dtype)[0]
        chunks, saved = _chunks(x), []
        for start, end in chunks:
            xc = x[start:end] - mean[start:end]  # (b', d, M), centred once
            s = torch.bmm(xc, xc.mT)  # (b', d, d) = M Sigma
            del xc
            trace = s.diagonal(dim1=-2, dim2=-1).sum(-1)  # M tr(Sigma)
            n = torch.div(trace, m, out=norm[start:end]).add_(EPS)  # tr(Sigma) + EPS
            a = s.mul_((1.0 / (m * n))[:, None, None])  # A = Sigma / n, in place
            y, part = _ns_forward(a, iterations)
            torch.index_select(y.flatten(1), 1, index, out=out[start:end]).mul_(n.sqrt()[:, None])
            saved += part
            del y, a, s, trace
        ctx.iterations, ctx.chunks, ctx.per_chunk = iterations, chunks, len(saved) // len(chunks)
        ctx.save_for_backward(x, mean, norm, out, *saved)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mean, norm, out, *saved = ctx.saved_tensors
        with torch.autocast(device_type=grad.device.type, enabled=False):
            grad = grad.to(out.dtype)
            b, d, m = x.shape
            _, index, weight = _triu_tables(d, grad.device, grad.dtype)
            root = norm.sqrt()
            # A = Sigma / n, n = tr(Sigma) + EPS, C = Y_J sqrt(n), g = dL/dA / sqrt(n):
            # dL/dSigma = (sym(g) + c I) / sqrt(n), c = sqrt(n) dL/dn = <dL/dC, Y_J>/2 - <g, A>
            half_dot = _dot(grad, out) / (2.0 * root)  # <dL/dC, Y_J> / 2
            scale = 1.0 / (m * root)
            d_x = torch.empty_like(x)  # the input's memory layout
            channel_major = d_x.stride(-1) == 1
            for i, (start, end) in enumerate(ctx.chunks):
                part = saved[i * ctx.per_chunk : (i + 1) * ctx.per_chunk]
                g_c = (grad[start:end] * weight).index_select(1, index).view(-1, d, d)  # sym(dL/dC)
                g = _ns_backward(g_c, part, ctx.iterations)  # sym(g) = dL/dA / sqrt(n)
                del g_c
                c = half_dot[start:end] - _dot(g, part[0])
                # dL/dX = (2/M) dL/dSigma Xc = (g + g^T + 2c I) Xc / (M sqrt(n))
                h = _add_diag_(torch.add(g, g.mT), 2.0 * c).mul_(scale[start:end, None, None])
                del g
                xc = x[start:end] - mean[start:end]  # (b', d, M), same memory layout as x
                if channel_major:
                    torch.bmm(h, xc, out=d_x[start:end])
                else:  # position-major input: write dX^T = Xc^T h (h = h^T) in that layout
                    torch.bmm(xc.mT, h, out=d_x[start:end].mT)
                del h, xc
            return d_x, None


def isqrt_cov(x: Tensor, iterations: int = 3) -> Tensor:
    """iSQRT-COV pooling: (B, d, H, W) or (B, d, M) -> (B, d(d+1)/2), float32 even under autocast."""
    if x.dim() == 4:
        x = x.flatten(2)  # (B, d, H, W) -> (B, d, M)
    if x.dim() != 3:
        raise ValueError(f"isqrt_cov expects (B, d, H, W) or (B, d, M), got shape {tuple(x.shape)}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _ISqrtCov.apply(x.to(_compute_dtype(x)), int(iterations))
