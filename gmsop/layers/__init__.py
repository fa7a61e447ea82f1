"""Layers of GM-SOP, one concept per module (see each module's docstring for the formula)."""

from gmsop.layers.gap import GAP, LinearExpert, ParametricGAP, XdHead, global_avg_pool
from gmsop.layers.gating import GateSpread, GateStats, NoisyTopKGate, cv_squared, gating_trunk
from gmsop.layers.grouped import GroupedPlan
from gmsop.layers.mixture import AverageMixture, GatedMixture
from gmsop.layers.netvlad import NetVLAD
from gmsop.layers.sop import SRSOP, ParametricSRSOP
