"""ResNet-X-Xd as the paper defines it: a parametric GAP read as a single-CM GM-GAP (the mixture's
BN1d + dropout classifier after it), with the 8256d rows at SR-SOP's dimension at every width."""

import pytest
import torch
from torch import nn

from gmsop import build_model
from gmsop.experiments import _canonical_overrides
from gmsop.paper_values import paper_params
from gmsop.registry import resolve_variant


def _params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("width_mult, dim", [(1.0, 8256), (0.25, 528)])
def test_8256d_takes_sr_sops_dimension_at_every_width(width_mult, dim):
    xd = build_model("ResNet-18-8256d", num_classes=10, width_mult=width_mult)
    sop = build_model("SR-SOP", num_classes=10, width_mult=width_mult)
    assert xd.rep_dim == sop.rep_dim == dim
    # other widths of the name scale linearly, as every head width does
    assert build_model("ResNet-18-512d", num_classes=10, width_mult=width_mult).rep_dim == int(
        512 * width_mult
    )


@pytest.mark.parametrize("width_mult", [1.0, 0.25])
def test_xd_head_structure_is_the_single_cm_gm_gap(width_mult):
    m = build_model("ResNet-18-8256d", num_classes=10, width_mult=width_mult)
    assert m.info["classifier"] == "bn_dropout" and m.info["mixture"]
    convs = [c for c in m.head.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (1, 1) and convs[0].bias is None
    assert convs[0].out_channels == m.rep_dim
    assert isinstance(m.classifier.norm, nn.BatchNorm1d) and m.classifier.norm.num_features == m.rep_dim
    assert isinstance(m.classifier.drop, nn.Dropout) and m.classifier.drop.p == 0.2
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.head.modules())
    out = m(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and float(out.balance_loss) == 0.0 and out.gate is None


def test_the_other_readings_are_labelled_switches():
    plain = build_model("ResNet-18-8256d", num_classes=10, width_mult=0.25, classifier="linear")
    assert plain.info["classifier"] == "linear" and plain.info["dropout"] == 0.0
    assert isinstance(plain.classifier.norm, nn.Identity) and isinstance(plain.classifier.drop, nn.Identity)
    conv_bn = build_model("ResNet-18-8256d", num_classes=10, width_mult=0.25, conv_bn=True)
    assert sum(isinstance(b, nn.BatchNorm2d) for b in conv_bn.head.modules()) == 1
    # the switch applies to any variant: a GAP baseline may take the mixture's classifier
    gap = build_model("ResNet-18", num_classes=10, width_mult=0.25, classifier="bn_dropout")
    assert isinstance(gap.classifier.norm, nn.BatchNorm1d)
    with pytest.raises(ValueError, match="unknown classifier 'bn'.*bn_dropout, linear"):
        resolve_variant("ResNet-18-8256d", overrides={"classifier": "bn"})


def test_a_classifier_override_equal_to_the_default_changes_no_run_id():
    spec = {"variant": "ResNet-18-8256d", "backbone": "resnet18", "protocol": "official"}
    assert _canonical_overrides({**spec, "overrides": {"classifier": "bn_dropout"}}) == {}
    assert _canonical_overrides({**spec, "overrides": {"classifier": "linear"}}) == {"classifier": "linear"}


@pytest.mark.parametrize(
    "name, backbone",
    [("ResNet-18-512d", "resnet18"), ("ResNet-50-512d", "resnet50"), ("ResNet-50-8256d", "resnet50")],
)
def test_full_width_parameters_within_3_percent_of_the_published(name, backbone):
    published, _ = paper_params(name, backbone)
    for overrides in ({}, {"classifier": "linear"}, {"conv_bn": True}):
        got = _params(build_model(name, backbone=backbone, num_classes=1000, **overrides))
        assert abs(got - published) / published <= 0.03, (name, overrides, got, published)
