"""``gmsop check-device``: the whole command on the CPU at tiny size, and its promises: a part
that fails does not stop the others, the report is rewritten after every part, options are checked.

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

from gmsop import device_check as dc

REPO_ROOT = dc.REPO_ROOT


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_part(tmp_path):
    out = tmp_path / "dc"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "gmsop", "check-device", "--device", "cpu", "--tiny", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((out / dc.JSON_NAME).read_text())
    assert (out / dc.MD_NAME).read_text().startswith("# gmsop check-device: PASSED")
    assert doc["complete"] and doc["verdict"] == "passed" and doc["env"]["device"] == "cpu"
    assert [p["name"] for p in doc["parts"]] == list(dc.PARTS)
    for part in doc["parts"]:
        assert part["status"] in ("passed", "skipped"), part  # on CPU tiny nothing may fail
        if part["status"] != "passed":
            assert part["reason"].strip(), part
        assert f"{part['status'].upper():<8} {part['name']}" in res.stdout  # the one-line verdict
    by_name = {p["name"]: p for p in doc["parts"]}
    assert "no CUDA" in by_name["cuda-tests"]["reason"]  # said honestly
    assert len(by_name["train-smoke"]["figures"]["variants"]) == len(dc.TABLE2)
    assert all(r["mfu"] > 0 for r in by_name["throughput"]["figures"]["variants"])
    assert wall < 150, f"the tiny CPU run took {wall:.0f} s"

    # gmsop plan reads the throughput part, labelled as tiny sizes
    from gmsop.plan import read_device_check

    ms = read_device_check(out / dc.JSON_NAME)
    assert len(ms) == len(dc.TABLE2) and all("--tiny" in m.device_name for m in ms)
    assert {m.input_size for m in ms} == {(3, dc.TINY.image_size, dc.TINY.image_size)}


def test_a_failing_part_does_not_stop_later_parts_and_the_report_follows_each(tmp_path):
    import torch

    def broken(ctx, figures, fail):
        figures["before"] = 1
        raise ValueError("boom: bad value 42")

    def finds_a_problem(ctx, figures, fail):
        fail("loss nan")
        figures["loss"] = float("nan")
        return "went on"

    snapshots = []

    def fine(ctx, figures, fail):
        snapshots.append(json.loads((tmp_path / dc.JSON_NAME).read_text()))  # the report before this part
        return "all good"

    def skips(ctx, figures, fail):
        raise dc.Skipped("needs a GPU")

    ctx = dc.Context(device=torch.device("cpu"), sizes=dc.TINY, out_dir=tmp_path, work_dir=tmp_path)
    header = {"started": "now", "options": {}, "env": {"device": "cpu"}}
    parts = {"broken": broken, "problem": finds_a_problem, "fine": fine, "skips": skips}
    doc = dc.run_parts(parts, ctx, header)
    assert doc == json.loads((tmp_path / dc.JSON_NAME).read_text())
    assert [p["status"] for p in doc["parts"]] == ["failed", "failed", "passed", "skipped"]
    broke, problem = doc["parts"][:2]
    assert "ValueError: boom: bad value 42" in broke["reason"] and broke["figures"] == {"before": 1}
    assert problem["reason"] == "loss nan" and problem["figures"]["loss"] == "nan"  # strict JSON
    assert doc["parts"][3]["reason"] == "needs a GPU" and doc["verdict"] == "failed" and doc["complete"]
    (before_fine,) = snapshots  # rewritten after every part: the first two finished, the rest pending
    assert [p["status"] for p in before_fine["parts"]] == ["failed", "failed", "pending", "pending"]
    assert not before_fine["complete"] and before_fine["verdict"] == "failed"
    assert "## broken: failed" in (tmp_path / dc.MD_NAME).read_text()


def test_options_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        dc.main(["--out", str(tmp_path), "--parts", "throughput,bogus"])
    assert exc.value.code == 2 and "'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dc.main([])  # --out is required
    (tmp_path / "file").write_text("")
    assert dc.main(["--out", str(tmp_path / "file"), "--device", "cpu"]) == 2
    assert "is a file" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert dc.main(["--out", str(tmp_path), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        dc.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--device", "--tiny", "--parts"):
        assert option in text
    assert all(name in text for name in dc.PARTS)


def test_table2_variants_are_those_of_the_config():
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    assert tuple(r["variant"] for r in config["experiments"]["table2"]["rows"]) == dc.TABLE2


def test_generated_release_reads_back_through_imagenet64(tmp_path):
    from gmsop.data import SubsetWarning, get_dataset

    dc.write_imagenet_release(tmp_path / "data", size=8, n_train=30, n_val=6, num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        ds = get_dataset(
            "imagenet64", tmp_path / "data", size=8, num_classes=3, cache_dir=str(tmp_path / "cache")
        )
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
                d.strip() == "pytest.mark.cuda" for d in decorators
            ):
                unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"add @pytest.mark.cuda to {unmarked}"
