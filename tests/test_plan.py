"""``gmsop plan``: jobs, epochs x images and hours of a workflow config, each row's speed measured,
extrapolated (and from what) or missing (left out of the total, counted), clear errors on bad
files. Expected numbers are derived here from the config files, not from the planner's output."""

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from gmsop import plan as gp
from gmsop.cli import main as gmsop_main
from gmsop.engine.throughput import main as bench_main
from gmsop.experiments import make_plan

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config.yaml"
IMAGENET = ROOT / "workflow" / "configs" / "paper-imagenet64.yaml"
PLACES = ROOT / "workflow" / "configs" / "paper-places365.yaml"


def _run_json(capsys, *argv) -> dict:
    assert gp.main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _row(out: dict, experiment: str, label: str) -> dict:
    hits = [r for r in out["rows"] if r["experiment"] == experiment and r["row"] == label]
    assert len(hits) == 1, (experiment, label)
    return hits[0]


@pytest.fixture(scope="module")
def cpu_bench(tmp_path_factory) -> Path:
    """One real bench.json (gmsop bench --out) of the default's ResNet-18-512d: width 0.25, 32 px."""
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "r18-512d.json"
    with contextlib.redirect_stdout(io.StringIO()):  # it also prints the record
        assert (
            bench_main(
                [
                    "--variant",
                    "ResNet-18-512d",
                    "--override",
                    "width_mult=0.25",
                    "--input-size",
                    "3,32,32",
                    "--num-classes",
                    "16",
                    "--batch-size",
                    "4",
                    "--warmup",
                    "0",
                    "--steps",
                    "1",
                    "--device",
                    "cpu",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    return folder


@pytest.fixture(scope="module")
def default_with_half_width(tmp_path_factory) -> Path:
    """The embedded default plus one table-2 row at width 0.5, which nothing measures."""
    cfg = yaml.safe_load(DEFAULT.read_text())
    cfg["experiments"]["table2"]["rows"].append(
        {"variant": "SR-SOP", "label": "SR-SOP (width 0.5)", "width_mult": 0.5, "schedule": "srsop"}
    )
    path = tmp_path_factory.mktemp("cfg") / "half.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_default_config_jobs_images_measured_extrapolated_and_missing(
    capsys, cpu_bench, default_with_half_width
):
    cfg = yaml.safe_load(default_with_half_width.read_text())
    out = _run_json(capsys, "--config", str(default_with_half_width), "--bench", str(cpu_bench))
    total = out["total"]
    # jobs deduplicated as the workflow does: the embedded default's, + one per Table-2 seed of the new row
    seeds = len(cfg["experiments"]["table2"].get("seeds", cfg["defaults"]["seeds"]))
    default_jobs = len(make_plan(yaml.safe_load(DEFAULT.read_text())).train_jobs())
    assert total["new_jobs"] == len(make_plan(cfg).train_jobs()) == default_jobs + seeds

    # one row by hand: ResNet-18-512d in table2, schedule gap = sum of its epochs, n_train images in batches
    gap_epochs = sum(ep for _, ep in cfg["schedules"]["gap"])
    n_train = cfg["datasets"]["synthetic"]["options"]["n_train"]
    batch = cfg["defaults"]["batch_size"]
    r = _row(out, "table2", "ResNet-18-512d")
    assert (r["epochs"], r["images_per_epoch"], r["new_jobs"]) == (
        gap_epochs,
        n_train // batch * batch,
        seeds,
    )
    assert r["images"] == seeds * gap_epochs * (n_train // batch * batch)
    bench = json.loads((cpu_bench / "r18-512d.json").read_text())
    assert r["speed"] == "measured" and r["train_img_s"] == pytest.approx(bench["train_img_s"])
    assert (
        "r18-512d.json" in r["speed_from"] and "batch 4" in r["speed_from"] and "3x32x32" in r["speed_from"]
    )
    assert r["hours"] == pytest.approx(r["images"] / bench["train_img_s"] / 3600)
    # figure3 asks for table3's run (the same recipe): counted once, for table3
    assert _row(out, "table3", "ResNet-18-512d")["new_jobs"] == 1
    assert _row(out, "figure3", "ResNet-18-512d")["new_jobs"] == 0

    # another model at the same width: extrapolated by the FLOPs ratio, naming the reference
    from gmsop.flops import count_flops
    from gmsop.registry import build_model

    g = _row(out, "table2", "GM-GAP-16-8")
    assert g["speed"] == "extrapolated" and "ResNet-18-512d" in g["speed_from"] and "FLOPs" in g["speed_from"]
    flops = {
        v: count_flops(build_model(v, num_classes=16, width_mult=0.25), (3, 32, 32))
        for v in ("ResNet-18-512d", "GM-GAP-16-8")
    }
    assert g["train_img_s"] == pytest.approx(
        bench["train_img_s"] * flops["ResNet-18-512d"] / flops["GM-GAP-16-8"], rel=1e-6
    )

    # nothing measured at width 0.5: no number, left out of the total, and the total says so
    m = _row(out, "table2", "SR-SOP (width 0.5)")
    assert m["speed"] == "no measurement" and m["hours"] is None and m["train_img_s"] is None
    assert total["jobs_without_speed"] == seeds and total["rows_without_speed"] == 1
    assert total["hours"] == pytest.approx(sum(x["hours"] for x in out["rows"] if x["hours"] is not None))
    assert f"{seeds} jobs (1 rows) have no measurement and are NOT in this total" in total["line"]
    assert total["gpu_only"] is False and "device-hours" in total["line"]  # a CPU speed is no GPU-hour


def _write_device_check(folder: Path, variants: list[dict], **sizes) -> Path:
    """A device_check.json as gmsop check-device writes it, its throughput part holding ``variants``
    at the full sizes (64x64, batch 256, width 1) unless ``sizes`` says otherwise."""
    from dataclasses import asdict, replace

    from gmsop import device_check as dc

    header = {
        "options": {"tiny": False},
        "sizes": asdict(replace(dc.FULL, **sizes)),
        "env": {"device": "cuda", "device_name": "Test GPU"},
    }
    record = {
        "name": "throughput",
        "status": "passed",
        "reason": "",
        "summary": "",
        "duration_s": 1.0,
        "figures": {"variants": variants},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / dc.JSON_NAME
    path.write_text(json.dumps(dc.document(header, [record], complete=True)))
    return path


@pytest.fixture(scope="module")
def device_check(tmp_path_factory) -> Path:
    """Two variants measured at 64x64, one the check could not run."""
    return _write_device_check(
        tmp_path_factory.mktemp("dc"),
        [
            {"variant": "ResNet-18-512d", "train_img_s": 5000.0},
            {"variant": "GM-GAP-16-8", "train_img_s": 3000.0},
            {"variant": "SR-SOP", "error": "RuntimeError: out of memory"},
        ],
    )


@pytest.fixture(scope="module")
def paper_out(device_check):
    """Both paper configs with the device check and the paper's speeds (JSON output)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            gp.main(
                [
                    "--config",
                    str(IMAGENET),
                    "--config",
                    str(PLACES),
                    "--device-check",
                    str(device_check),
                    "--assume-from-paper",
                    "--format",
                    "json",
                ]
            )
            == 0
        )
    return json.loads(buf.getvalue())


def test_paper_configs_rows_by_hand(paper_out):
    imagenet, places = yaml.safe_load(IMAGENET.read_text()), yaml.safe_load(PLACES.read_text())
    assert paper_out["total"]["new_jobs"] == len(make_plan(imagenet).train_jobs()) + len(
        make_plan(places).train_jobs()
    )
    # the starred row: 75 epochs of the flip-doubled full release (1,281,167 images), whole batches of 256
    star = _row(paper_out, "table3", "GM-GAP-16-8* (2x set, 75 epochs)")
    per_epoch = 2 * 1_281_167 // 256 * 256
    assert (star["epochs"], star["images_per_epoch"], star["images"]) == (75, per_epoch, 3 * 75 * per_epoch)
    # Places365: 1,803,460 images at 96x96 crops, ResNet-18-8256d's own schedule
    p = _row(paper_out, "table4", "ResNet-18-8256d")
    epochs = sum(ep for _, ep in places["schedules"]["places_8256d"])
    assert (p["input"], p["epochs"], p["images_per_epoch"]) == ("3x96x96", epochs, 1_803_460 // 256 * 256)


def test_paper_configs_speed_labels(paper_out, device_check):
    # measured in the device check at the row's own input size
    g = _row(paper_out, "table2", "GM-GAP-16-8")
    assert g["speed"] == "measured" and g["train_img_s"] == 3000.0 and "Test GPU" in g["speed_from"]
    # another model: extrapolated from the device check's model nearest in FLOPs, not from the paper
    from gmsop.flops import count_flops
    from gmsop.registry import build_model

    measured = {"ResNet-18-512d": 5000.0, "GM-GAP-16-8": 3000.0}
    flops = {v: count_flops(build_model(v, num_classes=1000), (3, 64, 64)) for v in measured}
    r50_flops = count_flops(build_model("ResNet-50-512d", backbone="resnet50", num_classes=1000), (3, 64, 64))
    ref = min(measured, key=lambda v: abs(math.log(flops[v] / r50_flops)))
    r50 = _row(paper_out, "table3", "ResNet-50-512d")
    assert r50["speed"] == "extrapolated"
    assert f"{ref} (resnet18) at {measured[ref]:,.0f} img/s" in r50["speed_from"]
    assert "nearest in FLOPs" in r50["speed_from"] and str(device_check) in r50["speed_from"]
    assert r50["train_img_s"] == pytest.approx(measured[ref] * flops[ref] / r50_flops, rel=1e-6)
    # the same model at another input size (Places365's 96 px crops)
    pl = _row(paper_out, "table4", "ResNet-18-512d")
    assert pl["speed"] == "extrapolated" and "another input size" in pl["speed_from"]
    assert "3x64x64 -> 3x96x96" in pl["speed_from"]
    # the device check is looked at first: every row comes from it, none from the paper
    assert {r["device_name"] for r in paper_out["rows"]} == {"Test GPU"}
    assert paper_out["total"]["gpu_only"] is True and "GPU-hours" in paper_out["total"]["line"]


def test_assume_from_paper_is_labelled(capsys):
    out = _run_json(capsys, "--config", str(PLACES), "--assume-from-paper")
    sr = _row(out, "table4", "SR-SOP")
    assert sr["speed"] == "extrapolated" and "Sec. 3.2" in sr["speed_from"] and "GTX 1080" in sr["speed_from"]
    assert sr["train_img_s"] < 670.0  # the paper's 64 px speed, scaled down to 96 px
    assert "GTX 1080" in out["total"]["line"] and out["total"]["jobs_without_speed"] == 0
    # at the paper's own setting the paper's number is "published", not "measured" by us
    from gmsop.paper_values import TRAIN_FPS

    imagenet = _run_json(capsys, "--config", str(IMAGENET), "--assume-from-paper")
    row = _row(imagenet, "table2", "GM-GAP-16-8")
    assert row["speed"] == "published" and row["train_img_s"] == TRAIN_FPS[("GM-GAP-16-8", "resnet18")][0]

    # the README's figures are this command's output, not typed from a guess
    readme = (ROOT / "README.md").read_text()
    for name, res in (("paper-imagenet64.yaml", imagenet), ("paper-places365.yaml", out)):
        t = res["total"]
        line = f"| `{name}` | {t['new_jobs']} | {gp._count(t['images'])} | {gp._hours(t['hours'])} GPU-hours"
        assert line in readme, line
    wrn = _row(imagenet, "table3", "GM-SOP-16-8 + WRN-36-2")["hours_per_job"]
    assert f"GM-SOP-16-8 + WRN-36-2 ({gp._hours(wrn)} h)" in readme


def test_text_and_csv_outputs(capsys, cpu_bench):
    assert gmsop_main(["plan", "--bench", str(cpu_bench), "--config", str(DEFAULT)]) == 0
    text = capsys.readouterr().out
    jobs = len(make_plan(yaml.safe_load(DEFAULT.read_text())).train_jobs())
    assert "Per experiment" in text and f"Total: {jobs} training jobs" in text
    assert "] measured: " in text and "] extrapolated: " in text
    assert gp.main(["--bench", str(cpu_bench), "--config", str(DEFAULT), "--format", "csv"]) == 0
    import csv

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["level"] for r in rows].count("total") == 1 and rows[-1]["new_jobs"] == str(jobs)
    with pytest.raises(SystemExit) as exc:
        gp.main(["--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    for option in ("--config", "--device-check", "--bench", "--assume-from-paper", "--format"):
        assert option in helptext


def _error(capsys, *argv) -> str:
    assert gp.main(list(argv)) == 2
    return capsys.readouterr().err


def test_bad_inputs_name_the_file_and_key(capsys, tmp_path, cpu_bench):
    bench = json.loads((cpu_bench / "r18-512d.json").read_text())
    del bench["train_img_s"]
    bad = tmp_path / "bad-bench.json"
    bad.write_text(json.dumps(bench))
    err = _error(capsys, "--config", str(DEFAULT), "--bench", str(bad))
    assert "bad-bench.json" in err and "train_img_s" in err

    nothr = tmp_path / "dc.json"
    nothr.write_text(json.dumps({"device_name": "x", "throughput": {}}))
    err = _error(capsys, "--config", str(DEFAULT), "--device-check", str(nothr))
    assert "dc.json" in err and "'format'" in err and "gmsop check-device" in err

    neg = _write_device_check(tmp_path / "neg", [{"variant": "GM-GAP-16-8", "train_img_s": -3}])
    err = _error(capsys, "--config", str(DEFAULT), "--device-check", str(neg))
    assert str(neg) in err and "parts[0].figures.variants[0].train_img_s" in err and "-3" in err

    unknown = _write_device_check(tmp_path / "unknown", [{"variant": "GM-FOO-1", "train_img_s": 5}])
    err = _error(capsys, "--config", str(DEFAULT), "--device-check", str(unknown))
    assert str(unknown) in err and "variants[0].variant" in err and "GM-FOO-1" in err

    cfg = copy.deepcopy(yaml.safe_load(DEFAULT.read_text()))
    cfg["defaults"]["batchsize"] = 64
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(cfg, sort_keys=False))
    err = _error(capsys, "--config", str(typo))
    assert "typo.yaml" in err and "batchsize" in err

    err = _error(capsys, "--config", str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in err and "not found" in err
    err = _error(capsys, "--config", str(DEFAULT), "--bench", str(tmp_path / "nowhere"))
    assert "nowhere" in err
