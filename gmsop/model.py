"""A classification network = backbone -> head (pooling / mixture) -> classifier.

``forward`` returns ``ModelOutput(logits, balance_loss, gate)``: the trainer adds ``balance_loss``
(zero for non-gated heads) to the cross-entropy; ``gate`` carries a gated mixture's statistics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from gmsop.layers import GateStats


class ModelOutput(NamedTuple):
    logits: Tensor  # (B, classes)
    balance_loss: Tensor  # scalar, already alpha-weighted; 0 for non-gated heads
    gate: GateStats | None  # routing counts / importance of a gated mixture


class ClassifierHead(nn.Module):
    """[BatchNorm1d -> Dropout(p) ->] Linear: with BN + dropout for mixtures (Sec. 2.3, p = 0.2; the
    released WRN-36-2 GM-SOP uses 0.4), the Linear alone for single heads (released code)."""

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


class GMSOPNet(nn.Module):
    """Any head on any backbone; ``info`` records what was built (variant, protocol, dims)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        dropout: float = 0.2,
        bn_momentum: float = 0.1,
        info: dict | None = None,
        classifier_bn: bool | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.mixture = bool(getattr(head, "mixture", False))
        # BN1d + dropout before the linear map: a mixture's classifier unless told otherwise
        bn = self.mixture if classifier_bn is None else bool(classifier_bn)
        self.rep_dim = int(head.out_features)
        self.classifier = ClassifierHead(
            self.rep_dim, num_classes, batchnorm=bn, dropout=dropout if bn else 0.0, bn_momentum=bn_momentum
        )
        self.info = dict(info or {}, rep_dim=self.rep_dim, num_classes=num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """He-normal (fan_in) for the head's and classifier's convs and linears, zero biases; the
        backbone initialises itself and the gate keeps its constant 1/D init."""
        for m in list(self.head.modules()) + list(self.classifier.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> ModelOutput:
        out = self.head(self.backbone(x))  # (B, 3, H, W) -> (B, C, h, w) -> (B, D) [, GateStats]
        rep, gate = out if isinstance(out, tuple) else (out, None)
        logits = self.classifier(rep)  # (B, D) -> (B, classes)
        loss = gate.balance_loss if gate is not None else torch.zeros((), device=logits.device)
        return ModelOutput(logits, loss, gate)
