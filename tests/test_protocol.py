"""The two readings and their switches."""

import pytest

from gmsop.protocol import OFFICIAL, PAPER, get_protocol, protocol_fields


def test_readings_differ_exactly_where_method_facts_says():
    diff = {f for f in protocol_fields() if getattr(OFFICIAL, f) != getattr(PAPER, f)}
    assert diff == {
        "ns_iterations",
        "weight_decay",
        "sop_stage5_stride",
        "alpha_per_batch",
        "cm_batchnorm",
        "gate_noise",
        "bn_momentum",
    }
    assert (OFFICIAL.ns_iterations, PAPER.ns_iterations) == (3, 5)


def test_effective_alpha():
    assert OFFICIAL.effective_alpha(256) == pytest.approx(100 / 256)
    assert PAPER.effective_alpha(256) == 100


def test_single_switch_override_and_errors():
    p = get_protocol("official", ns_iterations=5, alpha=None)
    assert p.ns_iterations == 5 and p.alpha == 100 and p.name == "official"
    with pytest.raises(ValueError, match="unknown protocol switch"):
        get_protocol("paper", iterations=5)
    with pytest.raises(ValueError, match="sop_stage5_stride"):
        get_protocol("paper", sop_stage5_stride=3)
