"""Bad input is refused early and clearly: one test (or a few) per case, in one place so the list
can grow. Each case says where it is caught (plan time, dataset build, ``gmsop train`` start) and
checks that the message names what is wrong (the key, the file, the index, the value)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from gmsop.data import get_dataset
from gmsop.data.stats import channel_mean_std
from gmsop.experiments import check_data, describe_schema_error, make_plan

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def tiny(**changes) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return cfg


# --- keys become file names: plain names only, refused at plan time naming the key ----------


@pytest.mark.parametrize("key", ["../../x", "a/b", ".hidden", "", "two words"])
def test_experiment_key_must_be_a_plain_name(key):
    cfg = tiny()
    cfg["experiments"] = {key: cfg["experiments"]["table2"]}
    with pytest.raises(ValueError, match=rf"experiments: key {key!r} is not a plain name"):
        make_plan(cfg)


def test_dataset_key_must_be_a_plain_name():
    cfg = tiny()
    cfg["datasets"] = {"../data": cfg["datasets"]["tiny"]}
    cfg["defaults"]["dataset"] = "../data"
    with pytest.raises(ValueError, match=r"datasets: key '\.\./data' is not a plain name"):
        make_plan(cfg)


def test_plain_keys_with_dots_dashes_underscores_pass():
    cfg = tiny()
    cfg["experiments"] = {"my_table-2.v1": cfg["experiments"]["table2"]}
    assert list(make_plan(cfg).experiments) == ["my_table-2.v1"]


# --- duplicate seeds would silently collapse to n = 1 -----------------------------------------


def test_duplicate_seeds_refused():
    cfg = tiny()
    cfg["experiments"]["table2"]["seeds"] = [0, 1, 0]
    with pytest.raises(ValueError, match=r"experiments\.table2\.seeds: seed\(s\) \[0\] given more than once"):
        make_plan(cfg)
    cfg = tiny()
    cfg["defaults"]["seeds"] = [3, 3]
    with pytest.raises(ValueError, match=r"defaults\.seeds: seed\(s\) \[3\]"):
        make_plan(cfg)


def test_duplicate_seeds_refused_by_the_schema_too():
    cfg = tiny()
    cfg["experiments"]["table2"]["seeds"] = [0, 0]
    assert _schema_error(cfg).startswith("experiments.table2.seeds: [0, 0] has non-unique elements")


# --- missing root, batch larger than the training set, NaN/inf learning rate: at plan time ----


def test_missing_dataset_root_is_found_when_planning(tmp_path):
    cfg = tiny()
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(tmp_path / "nope")}
    cfg["experiments"]["table2"]["dataset"] = "mine"
    missing, errors = check_data(make_plan(cfg))
    assert errors == []
    assert missing == [
        f"datasets.mine.root: {tmp_path / 'nope'} does not exist (resolved: {tmp_path / 'nope'})"
    ]


def test_unused_dataset_root_is_not_checked(tmp_path):
    cfg = tiny()
    cfg["datasets"]["unused"] = {"name": "npz", "root": str(tmp_path / "nope")}
    assert check_data(make_plan(cfg)) == ([], [])


def test_batch_larger_than_generated_training_set():
    cfg = tiny()  # table2's dataset: n_train 256
    cfg["experiments"]["table2"]["rows"][1]["batch_size"] = 257
    missing, errors = check_data(make_plan(cfg))
    assert missing == [] and len(errors) == 1
    assert errors[0].startswith(
        "experiments.table2.rows[1] (GM-SOP-4-2): batch_size 257 is larger than the training set"
    )
    assert "datasets.learnable (256 images)" in errors[0]
    cfg["experiments"]["table2"]["rows"][1]["augment"] = {"flip_double": True}  # 512 samples per epoch
    assert check_data(make_plan(cfg)) == ([], [])


def test_a_preset_that_does_not_double_lets_no_larger_batch_through():
    """The dataset's augment option names a preset: only a preset with flip_double doubles."""
    cfg = tiny()
    key = cfg["experiments"]["table2"].get("dataset") or cfg["defaults"]["dataset"]
    n = int(cfg["datasets"][key]["options"]["n_train"])
    cfg["datasets"][key].setdefault("options", {})["augment"] = "none"
    cfg["experiments"]["table2"]["rows"][1]["batch_size"] = n + 1
    errors = check_data(make_plan(cfg))[1]
    assert len(errors) == 1 and f"batch_size {n + 1} is larger than the training set" in errors[0]


def test_flip_doubled_goes_through_the_dataset_presets():
    from gmsop.data import flip_doubled

    assert flip_doubled("imagenet64", {"augment": "star"})
    assert not flip_doubled("imagenet64", {"augment": "flip"}) and not flip_doubled("imagenet64")
    assert flip_doubled("synthetic", {"augment": {"flip_double": True}})
    assert not flip_doubled("synthetic", {"augment": "none"})
    assert not flip_doubled("npz", {"augment": "pad_crop"})
    with pytest.raises(ValueError, match="unknown augment preset 'star'"):
        flip_doubled("synthetic", {"augment": "star"})


def test_batch_larger_than_npz_training_set_read_from_the_header(tmp_path):
    np.savez_compressed(tmp_path / "train.npz", x=np.zeros((5, 8, 8), np.uint8), y=[0, 1, 0, 1, 0])
    np.savez(tmp_path / "val.npz", x=np.zeros((2, 8, 8), np.uint8), y=[0, 1])
    cfg = tiny()
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(tmp_path)}
    cfg["experiments"] = {"t": {"kind": "table", "dataset": "mine", "rows": [{"variant": "ResNet-18"}]}}
    _, errors = check_data(make_plan(cfg))  # batch 16 > 5 images
    assert len(errors) == 1 and "datasets.mine (5 images)" in errors[0]


@pytest.mark.parametrize("lr", [float("nan"), float("inf")])
def test_non_finite_learning_rate_refused_when_planning(lr):
    cfg = tiny()
    cfg["schedules"]["short"] = [[lr, 1]]
    message = rf"schedules\.short: schedule: learning rate must be a positive finite number, got {lr}"
    with pytest.raises(ValueError, match=message):
        make_plan(cfg)
    cfg = tiny()
    cfg["experiments"]["table2"]["rows"][0]["schedule"] = [[0.1, 1], [lr, 1]]
    with pytest.raises(
        ValueError,
        match=r"experiments\.table2\.rows\[0\]: schedule: learning rate must be a "
        r"positive finite",
    ):
        make_plan(cfg)


# --- npz labels: no silent extra classes; label errors name the y array ----------------------


def _npz(root: Path, y_train, y_val, n: int | None = None):
    def x(k):
        return np.zeros((k, 3, 4, 4), np.uint8)

    np.savez(root / "train.npz", x=x(n or len(y_train)), y=np.asarray(y_train))
    np.savez(root / "val.npz", x=x(len(y_val)), y=np.asarray(y_val))


def test_npz_validation_label_outside_training_classes(tmp_path):
    _npz(tmp_path, [0, 1, 2, 1], [0, 4, 1])
    with pytest.raises(
        ValueError,
        match=r"val\.npz\[y\]: label 4 at index 1 is outside the classes seen in "
        r"training \(0\.\.2, from .*train\.npz\[y\]\)",
    ):
        get_dataset("npz", root=tmp_path)
    assert get_dataset("npz", root=tmp_path, num_classes=5).num_classes == 5  # said on purpose: accepted


def test_npz_label_errors_name_the_y_array(tmp_path):
    _npz(tmp_path, [0, 1, 5], [0, 1])
    with pytest.raises(ValueError, match=r"train\.npz\[y\]: label 5 at index 2 is outside \[0, 3\)"):
        get_dataset("npz", root=tmp_path, num_classes=3)
    _npz(tmp_path, [0, 1, 1], [0, -2])
    with pytest.raises(ValueError, match=r"val\.npz\[y\]: negative label -2 at index 1"):
        get_dataset("npz", root=tmp_path)
    _npz(tmp_path, [0, 1], [0, 1], n=3)
    with pytest.raises(ValueError, match=r"train\.npz\[y\]: 2 labels for 3 images"):
        get_dataset("npz", root=tmp_path)


# --- gmsop train with an output it cannot write: one line, exit status 3, before training ----


def _train_args(out: Path, *extra: str) -> list[str]:
    return [
        "--variant",
        "ResNet-18",
        "--dataset",
        "synthetic",
        "--dataset-option",
        "classes=2",
        "--dataset-option",
        "n_train=8",
        "--dataset-option",
        "n_val=4",
        "--dataset-option",
        "size=8",
        "--batch-size",
        "4",
        "--schedule",
        "0.1:1",
        "--device",
        "cpu",
        "--progress",
        "none",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture
def no_training(monkeypatch):
    """Training must not even start: building the run (data, model) fails the test."""
    from gmsop.engine import trainer

    def refuse(cfg):
        raise AssertionError("training started before the output was checked")

    monkeypatch.setattr(trainer, "build_run", refuse)


def test_train_output_under_a_file_exits_3_before_training(tmp_path, capsys, no_training):
    from gmsop.engine.train_cli import EXIT_UNWRITABLE, main

    (tmp_path / "file").write_text("not a folder")
    assert main(_train_args(tmp_path / "file" / "run" / "metrics.json")) == EXIT_UNWRITABLE == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"gmsop train: error: cannot write the output folder {tmp_path / 'file' / 'run'}")
    assert main(_train_args(tmp_path / "ok.json", "--ckpt-dir", str(tmp_path / "file" / "ck"))) == 3
    assert "cannot write the checkpoint folder" in capsys.readouterr().err


def test_train_read_only_output_folder_exits_3(tmp_path, capsys, no_training):
    from gmsop.engine.train_cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions (the test above covers root)")
        assert main(_train_args(ro / "metrics.json")) == 3
        assert "cannot write the output folder" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_train_help_documents_the_exit_status(capsys):
    from gmsop.engine.train_cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "3 cannot write --out's folder or --ckpt-dir" in capsys.readouterr().out


# --- an empty training split says which split of which dataset ------------------------------


def test_empty_npz_training_split_is_named(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((0, 3, 4, 4), np.uint8),
        y_train=np.zeros(0, np.int64),
        x_val=np.zeros((2, 3, 4, 4), np.uint8),
        y_val=[0, 1],
    )
    with pytest.raises(
        ValueError, match=r"npz: the train split is empty: .*d\.npz\[x_train\] holds 0 images"
    ):
        get_dataset("npz", root=tmp_path / "d.npz")


def test_empty_split_statistics_name_the_split():
    with pytest.raises(ValueError, match=r"^folder at /data: the train split is empty \(0 images\)"):
        channel_mean_std(np.zeros((0, 3, 4, 4), np.uint8), what="folder at /data: the train split")


# --- a typo inside an experiment row: the location and the key first, no schema dump -------


def _schema_error(cfg: dict) -> str:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(copy.deepcopy(cfg), str(SCHEMA))
    except WorkflowError as err:
        return describe_schema_error(err.__context__, yaml.safe_load(SCHEMA.read_text()))
    raise AssertionError("the schema accepted the config")


@pytest.mark.parametrize(
    "mutate, first",
    [
        (
            lambda c: c["experiments"]["table2"]["rows"][1].update(batch_szie=8),
            "experiments.table2.rows[1]: unknown key 'batch_szie'; "
            "allowed here: augment, backbone, batch_size",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].__setitem__(0, {"varaint": "SR-SOP"}),
            "experiments.table2.rows[0]: unknown key 'varaint'",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"][0].update(augment={"flpi": True}),
            "experiments.table2.rows[0].augment: unknown key 'flpi'; allowed here: eval_crop",
        ),
        (
            lambda c: c["defaults"].update(batch_szie=8),
            "defaults: unknown key 'batch_szie'; allowed here: augment",
        ),
        (lambda c: c["defaults"].update(batch_size="x"), "defaults.batch_size: 'x' is not of type 'integer'"),
    ],
)
def test_schema_error_starts_with_location_and_key(mutate, first):
    cfg = tiny()
    mutate(cfg)
    assert _schema_error(cfg).startswith(first)


@pytest.mark.slow
def test_snakemake_prints_the_location_first(tmp_path):
    """The one workflow check here (a dry-run that stops while planning): the error printed is
    one short message with the location and the key, not the schema."""
    from test_workflow import snakemake

    cfg = tiny()
    cfg["experiments"]["table2"]["rows"][1]["batch_szie"] = 8
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", config=tmp_path / "bad.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config error at experiments.table2.rows[1]: unknown key 'batch_szie'" in out, out
    assert "Failed validating" not in out and "On instance" not in out and "'description'" not in out, out


# --- a truncated npz: the file and the reason when planning, not a BadZipFile in the workflow --


@pytest.mark.parametrize("cut", ["train.npz", "val.npz"])
def test_truncated_npz_is_named_when_planning(tmp_path, monkeypatch, cut):
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path / "cache"))
    _npz(tmp_path, [0, 1, 0, 1], [0, 1])
    whole = (tmp_path / cut).read_bytes()
    (tmp_path / cut).write_bytes(whole[: len(whole) // 2])  # a copy cut short
    cfg = tiny()
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(tmp_path)}
    cfg["experiments"] = {
        "t": {"kind": "table", "dataset": "mine", "rows": [{"variant": "ResNet-18", "batch_size": 2}]}
    }
    missing, errors = check_data(make_plan(cfg))
    assert missing == [] and errors == [
        f"datasets.mine: {tmp_path / cut}: cannot read (BadZipFile: File is not a zip file); "
        f"the file may be truncated or corrupt"
    ]


def test_npz_labels_of_another_length_are_named_when_planning(tmp_path, monkeypatch):
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path / "cache"))
    _npz(tmp_path, [0, 1, 0], [0, 1], n=4)
    cfg = tiny()
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(tmp_path)}
    cfg["experiments"] = {
        "t": {"kind": "table", "dataset": "mine", "rows": [{"variant": "ResNet-18", "batch_size": 2}]}
    }
    errors = check_data(make_plan(cfg))[1]
    assert errors == [f"datasets.mine: {tmp_path / 'train.npz'}[y]: 3 labels for 4 images"]


# --- a schedule: the rule it breaks, not "not valid under any of the given schemas" ---------


@pytest.mark.parametrize(
    "schedule, first",
    [
        ([[-0.1, 2]], r"schedules\.short\[0\]\[0\]: -0\.1 is less than or equal to the minimum of 0"),
        ([], r"schedules\.short: \[\] (should be non-empty|is too short)"),
        ([[0.1, 0]], r"schedules\.short\[0\]\[1\]: 0 is less than the minimum of 1"),
    ],
)
def test_schedule_schema_error_names_the_rule_broken(schedule, first):
    cfg = tiny()
    cfg["schedules"]["short"] = schedule
    message = _schema_error(cfg)
    assert re.match(first, message), message
    assert (
        "at least one [learning rate, epochs] phase, each learning rate > 0 and finite, each epochs "
        "an integer >= 1"
        in message
        and "not valid under any" not in message
    )


@pytest.mark.parametrize(
    "schedule, rule",
    [
        ([[-0.1, 2]], r"learning rate must be a positive finite number, got -0\.1"),
        ([], r"schedule is empty"),
        ([[0.1, 0]], r"epochs must be >= 1, got 0"),
    ],
)
def test_schedule_rule_broken_is_named_by_the_planner(schedule, rule):
    cfg = tiny()
    cfg["experiments"]["table2"]["rows"][0]["schedule"] = schedule
    with pytest.raises(ValueError, match=r"^experiments\.table2\.rows\[0\]: .*" + rule):
        make_plan(cfg)


# --- an experiment that plans nothing is refused; skipped grid points are listed -----------


def test_grid_whose_every_point_has_k_above_n_is_refused():
    cfg = tiny()
    cfg["experiments"]["figure3"].update(n=[1, 2], k=[4, 8])
    with pytest.raises(
        ValueError,
        match=r"experiments\.figure3: every grid point has K > N "
        r"\(N=1 K=4, N=1 K=8, N=2 K=4, N=2 K=8\), so it plans no run",
    ):
        make_plan(cfg)


def test_skipped_grid_points_are_listed():
    cfg = tiny()
    cfg["experiments"]["figure3"].update(n=[2, 4], k=[1, 4])
    plan = make_plan(cfg)
    labels = [r.label for r in plan.experiments["figure3"].rows]
    assert labels == ["ResNet-18-512d", "N=2, K=1", "N=4, K=1", "N=4, K=4"]
    assert plan.notes == ["experiments.figure3: grid points skipped because K > N: N=2 K=4"]
    assert make_plan(tiny()).notes == []


@pytest.mark.parametrize("kind, key", [("table", "rows"), ("alpha", "alphas")])
def test_experiment_without_rows_is_refused(kind, key):
    cfg = tiny()
    exp = cfg["experiments"]["table2" if kind == "table" else "figure2"]
    exp[key] = []
    exp.pop("orderings", None)
    exp.pop("baseline", None)
    with pytest.raises(ValueError, match=r"experiments\.(table2|figure2): plans no run \(no rows\)"):
        make_plan(cfg)
