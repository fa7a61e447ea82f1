"""A classification network = backbone -> head (pooling / mixture) -> classifier.

``forward`` returns ``ModelOutput(logits, balance_loss, gate)``: the trainer adds
``balance_loss`` (zero for non-gated heads) to the cross-entropy, and ``gate`` carries the
per-component routing counts and importance of a gated mixture (None otherwise).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from gmsop.layers import ClassifierHead, GateStats

__all__ = ["GMSOPNet", "ModelOutput"]


class ModelOutput(NamedTuple):
    logits: Tensor  # (B, classes)
    balance_loss: Tensor  # scalar, already alpha-weighted; 0 for non-gated heads
    gate: GateStats | None  # routing counts / importance of a gated mixture


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
        """He-normal (fan_in) for the head's convs and linears and the classifier; zero biases.

        The backbone initialises itself; the gate keeps its constant 1/D init (reset_parameters).
        """
        for m in list(self.head.modules()) + list(self.classifier.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # (B, 3, H, W) -> (B, C, h, w)

    def forward_head(self, feats: Tensor) -> tuple[Tensor, GateStats | None]:
        out = self.head(feats)  # (B, C, h, w) -> (B, D) [, GateStats]
        return out if isinstance(out, tuple) else (out, None)

    def forward(self, x: Tensor) -> ModelOutput:
        rep, gate = self.forward_head(self.forward_features(x))
        logits = self.classifier(rep)  # (B, D) -> (B, classes)
        loss = gate.balance_loss if gate is not None else torch.zeros((), device=logits.device)
        return ModelOutput(logits, loss, gate)
