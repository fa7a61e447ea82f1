"""Layers of GM-SOP, one concept per module (see each module's docstring for the formula)."""

from gmsop.layers.classifier import ClassifierHead
from gmsop.layers.experts import LinearExpert
from gmsop.layers.gap import GAP, ParametricGAP, XdHead, global_avg_pool
from gmsop.layers.gating import GateStats, NoisyTopKGate, balance_loss, cv_squared, gating_trunk
from gmsop.layers.grouped import GroupedPlan
from gmsop.layers.mixture import AverageMixture, GatedMixture
from gmsop.layers.netvlad import NetVLAD
from gmsop.layers.sop import SRSOP, ParametricSRSOP, conv_stack

__all__ = [
    # gap.py
    "GAP",
    "ParametricGAP",
    "XdHead",
    "global_avg_pool",
    # sop.py
    "SRSOP",
    "ParametricSRSOP",
    "conv_stack",
    # gating.py
    "GateStats",
    "NoisyTopKGate",
    "balance_loss",
    "cv_squared",
    "gating_trunk",
    # mixture.py / grouped.py
    "AverageMixture",
    "GatedMixture",
    "GroupedPlan",
    # netvlad.py / experts.py / classifier.py
    "NetVLAD",
    "LinearExpert",
    "ClassifierHead",
]
