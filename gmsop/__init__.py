"""gmsop: Global Gated Mixture of Second-order Pooling (GM-SOP, NeurIPS 2018) in PyTorch.

import gmsop
model = gmsop.build_model("GM-SOP-16-8", backbone="resnet18", num_classes=1000, protocol="official")
out = model(images)            # ModelOutput(logits, balance_loss, gate)
gmsop.list_variants()          # the paper's variant names (+ registered ones)
gmsop.resolve_variant("GM-SOP-16-8", backbone="resnet50")  # what would be built: N, K, stride, ...
gmsop.functional.isqrt_cov(x)  # only the pooling: (B, d, H, W) -> (B, d(d+1)/2)
"""

__version__ = "0.1.0"

from gmsop import functional
from gmsop.backbones import create_backbone, list_backbones
from gmsop.heads import create_head, register_head
from gmsop.model import GMSOPNet, ModelOutput
from gmsop.protocol import OFFICIAL, PAPER, Protocol, get_protocol
from gmsop.registry import (
    ResolvedVariant,
    build_model,
    list_variants,
    parse_variant,
    register_variant,
    resolve_variant,
)
