"""``gmsop check-device``: the whole command on the CPU at tiny size, and the runner's promises
(time budget, a failing part does not stop the others, a report file after every part).

Not marked ``cuda``: the check's own cuda-tests part runs ``pytest -m cuda``, and must not run
this file again.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from gmsop.device_check import main
from gmsop.device_check.parts import PARTS, REPO_ROOT, TABLE2, write_imagenet_release
from gmsop.device_check.report import JSON_NAME, MD_NAME, document, write_json
from gmsop.device_check.runner import Part, run_parts, reserve_s


def _run(parts, total_s, snapshots=None):
    def record(records):
        if snapshots is not None:
            snapshots.append(json.loads(json.dumps(records)))

    return run_parts(parts, ctx=None, total_s=total_s, on_record=record, echo=lambda line: None)


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_part(tmp_path):
    out = tmp_path / "dc"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "gmsop", "check-device", "--device", "cpu", "--tiny", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((out / JSON_NAME).read_text())
    assert (out / MD_NAME).read_text().startswith("# gmsop check-device: PASSED")
    assert doc["complete"] and doc["verdict"] == "passed" and doc["env"]["device"] == "cpu"
    assert [p["name"] for p in doc["parts"]] == [p.name for p in PARTS]
    for part in doc["parts"]:
        assert part["status"] in ("passed", "skipped"), part  # on CPU tiny nothing may fail
        if part["status"] != "passed":
            assert part["reason"].strip(), part
        assert f"{part['status'].upper():<8} {part['name']}" in res.stdout  # the one-line verdict
    by_name = {p["name"]: p for p in doc["parts"]}
    assert "no CUDA" in by_name["cuda-tests"]["reason"]  # said honestly
    assert len(by_name["train-smoke"]["figures"]["variants"]) == len(TABLE2)
    assert all(r["mfu"] > 0 for r in by_name["throughput"]["figures"]["variants"])
    assert wall < 120, f"the tiny CPU run took {wall:.0f} s"


def test_a_part_that_raises_does_not_stop_later_parts():
    def broken(ctx, run):
        run.figures["before"] = 1
        raise ValueError("boom: bad value 42")

    def fine(ctx, run):
        run.summary = "all good"

    snapshots = []
    records = _run([Part("broken", broken, 1, ""), Part("fine", fine, 1, "")], total_s=30, snapshots=snapshots)
    assert [r["status"] for r in records] == ["failed", "passed"]
    assert "ValueError: boom: bad value 42" in records[0]["reason"]
    assert records[0]["figures"] == {"before": 1} and records[1]["summary"] == "all good"
    # the report is rewritten after every part: pending first, then one finished part at a time
    assert [[r["status"] for r in snap] for snap in snapshots] == [
        ["pending", "pending"], ["failed", "pending"], ["failed", "passed"]]


def test_a_part_past_its_budget_is_reported_timed_out_with_what_it_did():
    def spins(ctx, run):
        done = run.figures.setdefault("steps", 0)
        while True:
            run.budget.check(f"step {done + 1}")
            time.sleep(0.01)
            done = run.figures["steps"] = done + 1
            run.summary = f"{done} steps"

    def after(ctx, run):
        run.summary = "ran"

    t0 = time.monotonic()
    records = _run([Part("spins", spins, 1, ""), Part("after", after, 1, "")], total_s=1.0)
    assert time.monotonic() - t0 < 1.0 + reserve_s(1.0) + 0.5
    spun, later = records
    assert spun["status"] == "failed" and spun["reason"].startswith("timed out after")
    assert spun["figures"]["steps"] > 0 and f"{spun['figures']['steps']} steps" in spun["reason"]
    assert spun["budget_s"] == pytest.approx((1.0 - reserve_s(1.0)) / 2, abs=0.05)
    assert later["status"] == "passed"  # it still got its share


def test_a_step_that_never_checks_the_clock_is_stopped_by_the_hard_stop():
    def sleeps(ctx, run):
        time.sleep(30)

    t0 = time.monotonic()
    (record,) = _run([Part("sleeps", sleeps, 1, "")], total_s=1.0)
    assert time.monotonic() - t0 < 2.0
    assert record["status"] == "failed" and record["reason"].startswith("timed out: hard stop")


def test_no_time_left_fails_the_part_without_running_it():
    ran = []

    def hog(ctx, run):
        time.sleep(1.2)  # past the hard stop of a 1 s budget: only the timer ends it

    records = _run([Part("hog", hog, 100, ""), Part("starved", lambda c, r: ran.append(1), 1e-6, "")], total_s=1.0)
    assert records[0]["status"] == "failed" and records[1]["status"] == "failed" and not ran
    assert "before it started" in records[1]["reason"]


def test_report_keeps_finished_parts_and_writes_non_finite_numbers(tmp_path):
    records = [{"name": "a", "status": "failed", "reason": "loss nan", "summary": "", "duration_s": 1.0, "budget_s": 2.0,
                "figures": {"loss": float("nan")}},
               {"name": "b", "status": "pending", "reason": "", "summary": "", "duration_s": 0.0, "budget_s": None,
                "figures": {}}]
    write_json(tmp_path, document({"options": {}}, records, 1.0, complete=False))
    doc = json.loads((tmp_path / JSON_NAME).read_text())
    assert doc["verdict"] == "failed" and not doc["complete"] and doc["parts"][0]["figures"]["loss"] == "nan"


def test_options_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--parts", "throughput,bogus"])
    assert exc.value.code == 2 and "'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--time-budget-s", "-5"])
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])  # --out is required
    import torch

    if not torch.cuda.is_available():
        assert main(["--out", str(tmp_path), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--device", "--tiny", "--parts", "--time-budget-s"):
        assert option in text
    assert all(p.name in text for p in PARTS)


def test_table2_variants_are_those_of_the_config():
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    rows = config["experiments"]["table2"]["rows"]
    assert [(r["variant"], r.get("schedule")) for r in rows] == list(TABLE2)


def test_generated_release_reads_back_through_imagenet64(tmp_path):
    from gmsop.data import SubsetWarning, get_dataset

    write_imagenet_release(tmp_path / "data", size=8, n_train=30, n_val=6, num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        ds = get_dataset("imagenet64", tmp_path / "data", size=8, num_classes=3, cache_dir=str(tmp_path / "cache"))
    assert tuple(ds.train.images.shape) == (30, 3, 8, 8) and tuple(ds.val.images.shape) == (6, 3, 8, 8)
    assert set(ds.train.labels.tolist()) <= {0, 1, 2}
    assert Path(ds.info["cache"]).is_relative_to(tmp_path / "cache")


def test_every_test_that_skips_without_cuda_is_marked_cuda():
    """The cuda-tests part selects by the marker; a CUDA-only test without it would never run."""
    unmarked = []
    for path in sorted((REPO_ROOT / "tests").glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            decorators = [ast.get_source_segment(source, d) or "" for d in node.decorator_list]
            if any("skipif" in d and "not torch.cuda.is_available()" in d for d in decorators) and not any(
                    d.strip() == "pytest.mark.cuda" for d in decorators):
                unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"add @pytest.mark.cuda to {unmarked}"
