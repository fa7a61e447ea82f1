"""``resolve_variant``: one resolution of a variant, which build_model, schedules and reports share."""

import pytest
import torch

import gmsop
from gmsop import heads, registry
from gmsop.heads import SCHEDULE_FAMILIES, head_traits
from gmsop.registry import PAPER_VARIANTS, ResolvedVariant, build_model, resolve_variant


@pytest.fixture(autouse=True)
def _restore_registrations():
    """Heads and variants registered here vanish after each test (other tests list all variants)."""
    saved = [(d, dict(d)) for d in (heads.HEADS, heads._TRAITS, registry._CUSTOM)]
    yield
    for d, content in saved:
        d.clear()
        d.update(content)


#: name -> (head, N, K, alpha, last stride official, last stride paper, schedule family, mixture)
PAPER = {
    "ResNet-18": ("gap", None, None, None, 2, 2, "gap", False),
    "ResNet-18-512d": ("pgap", None, None, None, 2, 2, "gap", True),  # single-CM GM-GAP
    "Ave-GAP-16": ("ave_gap", 16, None, None, 2, 2, "gap", True),
    "GM-GAP-16-8": ("gm_gap", 16, 8, 100.0, 2, 2, "gap", True),
    "ResNet-18-8256d": ("pgap", None, None, None, 2, 2, "gap", True),
    "SR-SOP": ("srsop", None, None, None, 1, 2, "srsop", False),
    "Ave-SOP-16": ("ave_sop", 16, None, None, 1, 2, "srsop", True),
    "Parametric SR-SOP": ("psrsop", None, None, None, 1, 2, "srsop", False),
    "GM-SOP-16-8": ("gm_sop", 16, 8, 100.0, 1, 2, "gm_sop", True),
    "NetVLAD": ("netvlad", None, None, None, 2, 2, "srsop", False),
    "SG-MoE": ("sg_moe", 16, 8, 100.0, 2, 2, "gap", True),
}


def test_the_table_covers_every_paper_variant():
    assert sorted(PAPER) == sorted(PAPER_VARIANTS)


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_variants_resolve(name):
    head, n, k, alpha, stride_official, stride_paper, family, mixture = PAPER[name]
    official, paper = resolve_variant(name), resolve_variant(name, protocol="paper")
    for r in (official, paper):
        assert isinstance(r, ResolvedVariant)
        assert (r.display_name, r.head, r.num_experts, r.k, r.alpha) == (name, head, n, k, alpha)
        assert (r.schedule_family, r.mixture, r.backbone, r.backbone_name) == (
            family,
            mixture,
            "resnet18",
            "ResNet-18",
        )
        assert r.second_order == (family != "gap" and head != "netvlad")
        assert r.dropout == (0.2 if mixture else 0.0)
    assert (official.last_stride, paper.last_stride) == (stride_official, stride_paper)
    assert (official.protocol.name, paper.protocol.name) == ("official", "paper")


def test_display_name_and_backbone_follow_an_explicit_backbone():
    r = resolve_variant("ResNet-18-512d", backbone="resnet50")
    assert (r.display_name, r.variant.name) == ("ResNet-50-512d", "ResNet-18-512d")
    assert (r.backbone, r.backbone_name) == ("resnet50", "ResNet-50")
    assert r.paper_params == (2.8, "Table 3")
    assert resolve_variant("WRN-36-2").backbone == "wrn36_2"
    assert resolve_variant("GM-SOP-16-8", backbone="WRN-36-2").backbone_name == "WRN-36-2"


def test_paper_params_only_for_the_papers_configuration():
    assert resolve_variant("GM-SOP-16-8").paper_params == (10.3, "Table 3")
    assert resolve_variant("GM-SOP-16-8", backbone="wrn36_2").paper_params[0] == 15.7
    assert "method-facts" in resolve_variant("SR-SOP").paper_params[1]  # the released code's count
    assert resolve_variant("Ave-SOP-16").paper_params is None  # Table 3 has no such row
    assert resolve_variant("GM-SOP-16-8", width_mult=0.25).paper_params is None  # a scaled net
    assert resolve_variant("GM-SOP-16-8", overrides={"dims": [256, 64]}).paper_params is None  # another head
    assert resolve_variant("GM-SOP-16-8", overrides={"alpha": 0}).paper_params == (
        10.3,
        "Table 3",
    )  # loss only


def test_overrides_split_between_protocol_and_head():
    r = resolve_variant("GM-SOP-16-8", overrides={"alpha": 0, "ns_iterations": 5, "k": 4, "dims": None})
    assert (r.alpha, r.protocol.ns_iterations, r.protocol.name, r.k, r.num_experts) == (
        0,
        5,
        "official",
        4,
        16,
    )
    assert r.head_kwargs == {"num_experts": 16, "k": 4}
    assert resolve_variant("SR-SOP", overrides={"sop_stage5_stride": 2}).last_stride == 2
    assert resolve_variant("SG-MoE-8-2").num_experts == 8


def test_width_mult_scales_the_head_options_and_the_backbone_width():
    r = resolve_variant("GM-SOP-16-8", width_mult=0.25)
    assert r.head_kwargs == {"num_experts": 16, "k": 8, "sop_dim": 32} and r.in_channels == 32
    assert resolve_variant("ResNet-18-512d", width_mult=0.5).head_kwargs == {"width": 256}


def test_wrn_gm_gap_gate_is_the_released_one_layer_gate():
    """cnn_init_WRN_GM.m: the GM-GAP gate on WRN-36-2 is one conv 256->512 (+BN+ReLU) then GAP;
    the registry sets it (the head does not know the backbone), nowhere else."""
    r = resolve_variant("GM-GAP-16-8", backbone="wrn36_2")
    assert r.head_kwargs == {"num_experts": 16, "k": 8, "gate_dims": [512]} and r.in_channels == 256
    assert r.paper_params[0] == 8.7  # still the published row: the registry's choice, not an override
    assert resolve_variant("GM-GAP-16-8", backbone="wrn36_2", width_mult=0.25).head_kwargs["gate_dims"] == [
        128
    ]
    assert resolve_variant(
        "GM-GAP-16-8", backbone="wrn36_2", overrides={"gate_dims": [512, 128]}
    ).head_kwargs["gate_dims"] == [512, 128]  # an override wins
    for name, backbone in [
        ("GM-GAP-16-8", "resnet18"),
        ("GM-GAP-16-8", "resnet50"),
        ("GM-SOP-16-8", "wrn36_2"),
        ("SG-MoE", "wrn36_2"),
    ]:
        assert "gate_dims" not in resolve_variant(name, backbone=backbone).head_kwargs, (name, backbone)


def test_dropout():
    assert resolve_variant("GM-SOP-16-8", backbone="wrn36_2").dropout == 0.4  # the released WRN-36-2 value
    assert resolve_variant("GM-GAP-16-8", backbone="wrn36_2").dropout == 0.2
    assert resolve_variant("GM-GAP-16-8", dropout=0.3).dropout == 0.3
    assert resolve_variant("SR-SOP", dropout=0.3).dropout == 0.0  # no dropout without a mixture


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("GM-SOB-16-8", {}, "unknown variant 'GM-SOB-16-8'"),
        ("GM-SOP-8-9", {}, "K must satisfy 1 <= K <= N, got N=8, K=9"),
        ("GM-SOP-16-8", {"backbone": "resnet34"}, "unknown backbone 'resnet34' for variant 'GM-SOP-16-8'"),
        (
            "GM-GAP-16-8",
            {"overrides": {"widht": 256}},
            r"unknown option\(s\) \['widht'\] for variant 'GM-GAP-16-8'",
        ),
        ("SR-SOP", {"protocol": "released"}, "unknown protocol 'released'"),
        ("GM-GAP-16-8", {"overrides": {"gate_noise": "sometimes"}}, "gate_noise must be one of"),
        ("SR-SOP", {"width_mult": 0}, "width_mult must be > 0"),
    ],
)
def test_refuses_what_build_model_refuses_with_the_same_message(name, kwargs, message):
    with pytest.raises(ValueError, match=message) as resolved:
        resolve_variant(name, **kwargs)
    build_kwargs = {k: v for k, v in kwargs.items() if k != "overrides"} | kwargs.get("overrides", {})
    with pytest.raises(ValueError) as built:
        build_model(name, num_classes=10, **build_kwargs)
    assert str(built.value) == str(resolved.value)


def test_resolving_builds_no_module(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("resolve_variant built a torch module")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    for name in PAPER:
        resolve_variant(name, backbone="wrn36_2", protocol="paper")


@pytest.mark.parametrize("name", list(PAPER))
@pytest.mark.parametrize("protocol", ["official", "paper"])
def test_build_model_info_agrees_with_the_resolution(name, protocol):
    r = resolve_variant(name, protocol=protocol, width_mult=0.25)
    m = build_model(name, num_classes=10, protocol=protocol, width_mult=0.25)
    assert {k: m.info[k] for k in r.info()} == r.info()
    assert m.protocol == r.protocol and m.mixture == r.mixture
    assert bool(getattr(m.head, "second_order", False)) == r.second_order
    assert m.backbone(torch.randn(1, 3, 64, 64)).shape[-1] == (16 if r.last_stride == 1 else 8)
    assert (len(m.head.components) if hasattr(m.head, "components") else None) == r.num_experts
    assert getattr(m.head, "k", None) == r.k
    assert getattr(m.head, "alpha", None) == r.alpha
    assert isinstance(m.classifier.drop, torch.nn.Dropout) == (r.dropout > 0)


class _SecondOrderPool(torch.nn.Module):
    second_order = True  # declared on the class: known before the head is built

    def __init__(self, in_channels):
        super().__init__()
        self.out_features = in_channels * in_channels

    def forward(self, x):
        f = x.flatten(2)
        return (f @ f.mT / f.shape[-1]).flatten(1)


def test_plugin_head_declaring_second_order_resolves_as_second_order():
    gmsop.register_head("test_outer", _SecondOrderPool, overwrite=True)
    gmsop.register_variant("Test-Outer", "test_outer", overwrite=True)
    r = resolve_variant("Test-Outer")
    assert (r.second_order, r.last_stride, r.schedule_family, r.mixture, r.alpha) == (
        True,
        1,
        "srsop",
        False,
        None,
    )
    assert resolve_variant("Test-Outer", protocol="paper").last_stride == 2
    m = build_model("Test-Outer", num_classes=3, width_mult=0.25)
    assert m.info["last_stride"] == 1 and m.backbone(torch.randn(1, 3, 64, 64)).shape[-1] == 16


def test_plugin_traits_from_register_head_and_register_variant():
    gmsop.register_head(
        "test_factory", lambda in_channels: _SecondOrderPool(in_channels), overwrite=True, second_order=True
    )
    assert head_traits("test_factory").second_order and head_traits("test_factory").schedule_family == "srsop"
    gmsop.register_variant("Test-Factory", "test_factory", overwrite=True, schedule_family="gm_sop")
    assert resolve_variant("Test-Factory").schedule_family == "gm_sop"
    with pytest.raises(ValueError, match="unknown schedule family 'second_order'"):
        gmsop.register_variant("Test-Bad", "test_factory", schedule_family="second_order")
    with pytest.raises(ValueError, match="unknown schedule family"):
        gmsop.register_head("test_bad", _SecondOrderPool, schedule_family="first_order")


def test_build_model_refuses_a_head_contradicting_its_declaration():
    class Undeclared(_SecondOrderPool):
        second_order = False

        def __init__(self, in_channels):
            super().__init__(in_channels)
            self.second_order = True  # only on the instance: the registry cannot see it unbuilt

    gmsop.register_head("test_undeclared", Undeclared, overwrite=True)
    gmsop.register_variant("Test-Undeclared", "test_undeclared", overwrite=True)
    with pytest.raises(ValueError, match="second_order=True, but the family declares second_order=False"):
        build_model("Test-Undeclared", num_classes=3, width_mult=0.25)


def test_every_head_family_names_a_known_schedule_family():
    assert all(head_traits(h).schedule_family in SCHEDULE_FAMILIES for h in gmsop.heads.HEADS)
