"""The released step size at any batch: every lr of a schedule x batch / the batch it was published
with (256; 150 for WRN-36-2), on by default, off with ``lr_scaling: none``."""

import pytest

from gmsop.engine.config import DEFAULT_SCHEDULES, TrainConfig
from gmsop.engine.trainer import train
from gmsop.experiments import make_plan
from gmsop.pipeline import train_config


@pytest.mark.parametrize(
    "variant, backbone, batch, factor",
    [
        ("ResNet-18", None, 64, 64 / 256),
        ("ResNet-18", None, 256, 1.0),
        ("GM-SOP-16-8", "wrn36_2", 150, 1.0),  # the WRN rows were published at batch 150
        ("GM-SOP-16-8", "wrn36_2", 256, 256 / 150),
        ("SR-SOP", "resnet50", 128, 0.5),
    ],
)
def test_schedule_scaled_by_batch_over_released_batch(variant, backbone, batch, factor):
    cfg = TrainConfig(variant=variant, backbone=backbone, batch_size=batch)
    family = "gm_sop" if variant.startswith("GM-SOP") else ("srsop" if variant == "SR-SOP" else "gap")
    released = DEFAULT_SCHEDULES[family]
    assert cfg.resolved_schedule() == [pytest.approx((lr * factor, ep)) for lr, ep in released]
    assert cfg.lr_at(1) == pytest.approx(released[0][0] * factor)
    off = TrainConfig(variant=variant, backbone=backbone, batch_size=batch, lr_scaling="none")
    assert off.resolved_schedule() == released


def test_bad_lr_scaling_named():
    with pytest.raises(ValueError, match="lr_scaling must be one of linear, none, got 'sqrt'"):
        TrainConfig(lr_scaling="sqrt")


def test_a_run_steps_at_the_scaled_rate_and_records_it():
    m = train(
        TrainConfig(
            variant="ResNet-18",
            dataset_options={"classes": 4, "n_train": 64, "n_val": 16, "size": 16},
            batch_size=16,
            schedule="0.08:1",
            max_train_batches=1,
            progress="none",
            overrides={"width_mult": 0.125},
        )
    )
    assert m["epochs"][0]["lr"] == pytest.approx(0.08 * 16 / 256)
    assert m["hparams"]["lr_factor"] == pytest.approx(16 / 256) and m["hparams"]["lr_scaling"] == "linear"
    assert m["hparams"]["schedule"] == [[pytest.approx(0.005), 1]]


def _config(**defaults):
    return {
        "datasets": {
            "s": {"name": "synthetic", "options": {"classes": 4, "n_train": 64, "n_val": 16, "size": 16}}
        },
        "schedules": {k: [list(p) for p in v] for k, v in DEFAULT_SCHEDULES.items()},
        "defaults": {
            "backbone": "resnet18",
            "protocol": "official",
            "dataset": "s",
            "batch_size": 64,
            "width_mult": 1.0,
            **defaults,
        },
        "experiments": {
            "t": {
                "kind": "table",
                "rows": [
                    {"variant": "ResNet-18"},
                    {"variant": "ResNet-18", "label": "unscaled", "lr_scaling": "none"},
                    {"variant": "GM-GAP-16-8", "backbone": "wrn36_2", "batch_size": 150},
                ],
            }
        },
    }


def test_the_planner_scales_by_default_and_the_switch_is_a_distinct_run():
    plan = make_plan(_config())
    rows = plan.experiments["t"].rows
    assert [r.settings["lr_scaling"] for r in rows] == ["linear", "none", "linear"]
    assert rows[0].run != rows[1].run
    ds = plan.datasets["s"]
    lrs = [train_config(r.settings, ds, 0, "m.json", "ck").lr_at(1) for r in rows]
    gap = DEFAULT_SCHEDULES["gap"][0][0]
    assert lrs == [pytest.approx(gap * 64 / 256), pytest.approx(gap), pytest.approx(gap)]


def test_tables_and_scorecard_label_the_step_size(tmp_path):
    from result_files import make_run_metrics, write_json

    from gmsop.aggregate.display import table_notes
    from gmsop.aggregate.load import load_metrics
    from gmsop.aggregate.scorecard import build_scorecard
    from gmsop.aggregate.tables import build_table
    from gmsop.claim_spec import parse_claims
    from gmsop.experiments import Experiment, Row

    def row(label, run):
        return Row(
            experiment="t",
            index=0,
            label=label,
            run=run,
            bench=f"b-{run}",
            seeds=(0, 1),
            variant="ResNet-18",
            display="ResNet-18",
            backbone="resnet18",
            protocol="official",
            dataset="s",
            dataset_name="synthetic",
            width_mult=0.25,
            settings={},
        )

    hp = {"batch_size": 64, "lr_factor": 0.25, "lr_scaling": "linear"}
    for run, errs in (("a", (20.0, 22.0)), ("b", (30.0, 33.0))):
        for seed, err in enumerate(errs):
            write_json(
                tmp_path / run / f"seed{seed}" / "metrics.json",
                make_run_metrics(run, "ResNet-18", seed=seed, top1=err, classes=16, hparams=hp),
            )
    exp = Experiment(
        name="t",
        kind="table",
        title="T",
        paper=None,
        baseline=None,
        claims=tuple(parse_claims(["A < B"], ["A", "B"])),
        rows=(row("A", "a"), row("B", "b")),
    )
    runs = load_metrics(tmp_path).runs
    text = "batch 64, lr x 0.25 (linear scaling from batch 256)"
    assert f"Step size: every row at {text}" in " ".join(table_notes(build_table(exp, runs, None)))
    assert build_scorecard([exp], runs)["step_size"].tolist() == [text]
