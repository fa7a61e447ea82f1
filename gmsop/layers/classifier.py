"""The classifier after the representation.

Mixture models (Ave-N, GM-N-K, SG-MoE): BatchNorm1d -> Dropout(p) -> Linear, as in Section 2.3
(p = 0.2; the released WRN-36-2 GM-SOP uses 0.4). Single-representation baselines go straight
to the Linear layer, as in the released code.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Module):
    def __init__(
        self,
        in_features: int,
        num_classes: int,
        batchnorm: bool = False,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.norm = nn.BatchNorm1d(in_features, momentum=bn_momentum) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)
        self.in_features, self.num_classes = in_features, num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.norm(x)))  # (B, D) -> (B, classes)
