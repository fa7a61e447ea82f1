"""The two readings of GM-SOP: the authors' released code (``official``) and the paper's text.

Where the paper is silent or disagrees with the released MatConvNet code, each difference is
one field here (see shared/reference/method-facts.md, "Discrepancies"), so every one can be
ablated on its own: ``get_protocol("official", ns_iterations=5)``. Layers never see a protocol
name, only these values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: Switches that change the loss or the optimiser but not a step's computation: runs differing only
#: in these share one throughput benchmark and FLOP count.
SPEED_NEUTRAL = ("alpha", "alpha_per_batch", "weight_decay")

#: Gate noise readings: the released code's, the paper's, and the no-noise ablation.
GATE_NOISES = ("per_image", "per_logit", "none")


@dataclass(frozen=True)
class Protocol:
    name: str
    ns_iterations: int  # Newton-Schulz iterations: paper 5, released code 3
    weight_decay: float  # paper 5e-4, released code 1e-4
    sop_stage5_stride: int  # stage-5 stride under second-order heads: paper 2 (8x8), code 1 (16x16)
    alpha: float  # balance-loss weight: 100 in both
    alpha_per_batch: bool  # code: alpha on a batch-SUMMED CE, i.e. alpha/B on a mean CE; paper: alpha
    cm_batchnorm: bool  # BN after each 1x1 conv inside a parametric CM: code none; paper silent (yes)
    gate_noise: str  # code "per_image" (one gamma per image); paper "per_logit" (Eq. 2); "none": ablation
    bn_momentum: float  # BatchNorm running-stat momentum (PyTorch convention): code 0.3; paper silent (0.1)

    def __post_init__(self):
        if self.ns_iterations < 1:
            raise ValueError(f"ns_iterations must be >= 1, got {self.ns_iterations!r}")
        if self.sop_stage5_stride not in (1, 2):
            raise ValueError(f"sop_stage5_stride must be 1 or 2, got {self.sop_stage5_stride!r}")
        if self.gate_noise not in GATE_NOISES:
            raise ValueError(f"gate_noise must be one of {GATE_NOISES}, got {self.gate_noise!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum!r}")

    def effective_alpha(self, batch_size: int) -> float:
        """The weight applied to CV^2 against a MEAN cross-entropy (100/B under the code)."""
        return self.alpha / batch_size if self.alpha_per_batch else self.alpha


#: The two readings, values in the order of the fields above.
OFFICIAL = Protocol("official", 3, 1e-4, 1, 100.0, True, False, "per_image", 0.3)
PAPER = Protocol("paper", 5, 5e-4, 2, 100.0, False, True, "per_logit", 0.1)
PROTOCOLS = {p.name: p for p in (OFFICIAL, PAPER)}


def protocol_fields() -> list[str]:
    """Names of the switches a user may override (every field but ``name``)."""
    return [f.name for f in dataclasses.fields(Protocol) if f.name != "name"]


def get_protocol(protocol: str | Protocol = "official", **overrides) -> Protocol:
    """A named protocol, optionally with some switches changed (None values are ignored)."""
    base = protocol if isinstance(protocol, Protocol) else PROTOCOLS.get(protocol)
    if base is None:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(overrides) - set(protocol_fields()))
    if bad:
        raise ValueError(f"unknown protocol switch(es) {bad}; valid: {', '.join(protocol_fields())}")
    return dataclasses.replace(base, **overrides) if overrides else base
