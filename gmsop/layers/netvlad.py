"""NetVLAD (Arandjelovic et al., CVPR 2016): the Table-3 feature-encoding counterpart.

(B, C, H, W) -> (B, K*C): each descriptor x_m (L2-normalised over channels) is softly assigned
to K clusters, a = softmax_k(w_k x_m + b_k); V_k = sum_m a_km (x_m - c_k), computed in matmul
form as A X^T - (sum_m a_km) c_k (never a [B, K, C, M] tensor); intra-normalise each V_k,
flatten, L2-normalise. K = 64 on 128-d gives the paper's 8192-d representation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NetVLAD(nn.Module):
    def __init__(self, in_channels: int, clusters: int = 64):
        super().__init__()
        if int(clusters) < 1:
            raise ValueError(f"clusters must be >= 1, got {clusters!r}")
        self.in_channels, self.clusters = in_channels, int(clusters)
        self.assign = nn.Conv2d(in_channels, self.clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.rand(self.clusters, in_channels))
        self.out_features = self.clusters * in_channels

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(x, dim=1)  # descriptor-wise L2 over channels
        a = torch.softmax(self.assign(x).flatten(2), dim=1)  # (B, K, M)
        feats = x.flatten(2)  # (B, C, M)
        vlad = torch.bmm(a, feats.transpose(1, 2))  # (B, K, C)
        vlad = vlad - a.sum(dim=2, keepdim=True) * self.centroids.to(vlad.dtype)  # (B, K, C)
        vlad = F.normalize(vlad, dim=2)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=1)  # (B, K*C)
