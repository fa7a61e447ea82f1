"""``gmsop preflight``: its verdict rules on hand-made records, and real short runs on the
smallest shapes that reproduce each behaviour: a plain-classifier 2064-d head collapses at a high
step size, ResNet-18 with its GAP head trains at the same one."""

import math

import pytest

from gmsop.preflight import main, networks, preflight_network, verdict

LN16 = math.log(16)


@pytest.mark.parametrize(
    "losses, norms, live, share, expected, reason",
    [
        ([3.0, float("nan")], [1, 1], [1, 1], [0.1, 0.1], "diverged", "not finite at step 2"),
        (
            [3.0, 3.2, 2.9, 2.8],
            [1, 1, 1, 1],
            [1, 0.9, 0.3, 0.05],
            [0.1] * 4,
            "collapsed",
            "5% of the backbone",
        ),
        ([3.0, 3.2, 2.9, 2.8], [1, 1, 1, 1], [0.9, 0.8, 0.5, 0.4], [0.1] * 4, "collapsed", "dying: 90%"),
        ([3.0, 3.2, 2.9, 2.8], [1, 1, 1, 1e-5], [1] * 4, [0.1] * 4, "collapsed", "gradients vanished"),
        ([3.0, 6.0, 2.9, 2.8], [1, 1, 1, 1], [1] * 4, [0.1] * 4, "diverged", "peaked at 6.00 at step 2"),
        (
            [3.0, 2.9, 2.8, 2.78],
            [1, 1, 1, 1],
            [1] * 4,
            [0.2, 0.5, 0.9, 0.95],
            "collapsed",
            "one class for 95%",
        ),
        ([3.2, 3.0, 2.6, 2.5], [1, 1, 1, 1], [1] * 4, [0.2] * 4, "ok", "loss 3.10 -> 2.55"),
        ([3.0, 3.0, 2.95, 3.0], [1, 1, 1, 1], [1] * 4, [0.2] * 4, "too slow to tell", "more steps"),
    ],
)
def test_verdict_rules(losses, norms, live, share, expected, reason):
    got, why = verdict(losses, norms, live, share, 16)
    assert got == expected and reason in why, (got, why)


def _spec(variant, overrides=None):
    return {
        "variant": variant,
        "backbone": "resnet18",
        "protocol": "official",
        "batch_size": 32,
        "lr_scaling": "none",
        "width_mult": 0.125,
        "overrides": overrides or {},
        "augment": {},
        "schedule": [[0.15, 1]],
        "deterministic": True,
    }


def test_flags_a_collapsing_head_and_passes_a_stable_one():
    dead = preflight_network(_spec("ResNet-18-2064d", {"classifier": "linear"}), 16, 16, steps=16, seed=1)
    assert dead.verdict == "collapsed", dead.reason
    assert dead.live_units[-1] < 0.5 * dead.live_units[0] and len(dead.losses) == 16
    fine = preflight_network(_spec("ResNet-18"), 16, 16, steps=16, seed=1)
    assert fine.verdict == "ok", fine.reason
    assert fine.lr == 0.15 and min(fine.live_units) > 0.9


def test_networks_dedupes_rows_and_labels_them():
    ds = {"name": "synthetic", "options": {"classes": 5, "n_train": 64, "n_val": 16, "size": 24}}
    config = {
        "datasets": {"a": ds, "b": {**ds, "options": {**ds["options"], "seed": 3}}},
        "schedules": {"gap": [[0.1, 1]], "srsop": [[0.2, 1]], "gm_sop": [[0.1, 1]]},
        "defaults": {
            "backbone": "resnet18",
            "protocol": "official",
            "dataset": "a",
            "batch_size": 64,
            "width_mult": 0.25,
        },
        "experiments": {
            "t": {"kind": "table", "rows": [{"variant": "ResNet-18"}, {"variant": "SR-SOP"}]},
            "u": {"kind": "table", "dataset": "b", "rows": [{"variant": "ResNet-18"}]},
        },
    }
    found = networks(config)
    assert [(label, spec["variant"], c, s) for label, spec, c, s in found] == [
        ("t: ResNet-18, u: ResNet-18", "ResNet-18", 5, 24),
        ("t: SR-SOP", "SR-SOP", 5, 24),
    ]


def test_cli_names_a_missing_config(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
