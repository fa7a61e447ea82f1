"""gmsop: Global Gated Mixture of Second-order Pooling (GM-SOP, NeurIPS 2018) in PyTorch.

import gmsop
model = gmsop.build_model("GM-SOP-16-8", backbone="resnet18", num_classes=1000, protocol="official")
out = model(images)            # ModelOutput(logits, balance_loss, gate)
gmsop.list_variants()          # the paper's variant names (+ registered ones)
gmsop.resolve_variant("GM-SOP-16-8", backbone="resnet50")  # what would be built: N, K, stride, ...
gmsop.functional.isqrt_cov(x)  # only the pooling: (B, d, H, W) -> (B, d(d+1)/2)
"""

__version__ = "0.1.0"

import importlib

#: Public name -> defining module, imported on first use (PEP 562): ``import gmsop`` costs
#: nothing, so a workflow job that only aggregates results never imports torch.
_MODULE_OF = {
    "functional": None,
    "create_backbone": "backbones",
    "list_backbones": "backbones",
    "create_head": "heads",
    "register_head": "heads",
    "GMSOPNet": "model",
    "ModelOutput": "model",
    "OFFICIAL": "protocol",
    "PAPER": "protocol",
    "Protocol": "protocol",
    "get_protocol": "protocol",
    "ResolvedVariant": "registry",
    "build_model": "registry",
    "list_variants": "registry",
    "parse_variant": "registry",
    "register_variant": "registry",
    "resolve_variant": "registry",
}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'gmsop' has no attribute {name!r}")
    module = _MODULE_OF[name]
    if module is None:
        return importlib.import_module(f"gmsop.{name}")
    return getattr(importlib.import_module(f"gmsop.{module}"), name)


__all__ = ["__version__", *_MODULE_OF]
