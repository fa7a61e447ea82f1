"""The workflow follows the data: a replaced npz retrains exactly the runs that read it (nothing
else is touched), an unchanged one is reused, and a rule row's malformed metrics.json stops the
workflow in its own check job, before a table reads it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import job_counts, snakemake

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
pytestmark = pytest.mark.slow


def write_npz(root: Path, flip_labels: bool = False) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    y = np.arange(32) % 4
    x = rng.integers(0, 256, (32, 3, 8, 8), dtype=np.uint8)
    np.savez(root / "train.npz", x=x, y=3 - y if flip_labels else y)
    np.savez(root / "val.npz", x=rng.integers(0, 256, (8, 3, 8, 8), dtype=np.uint8), y=np.arange(8) % 4)


def config(work: Path, rows: list[dict], **extra) -> Path:
    cfg = copy.deepcopy(TINY)
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(work / "data")}
    cfg["defaults"]["batch_size"] = 8
    cfg["bench"] = {"enabled": False}
    cfg["experiments"] = {"t": {"kind": "table", "seeds": [0], "rows": rows}}
    cfg.update(extra)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_replaced_npz_retrains_exactly_its_runs(tmp_path):
    write_npz(tmp_path / "data")
    path = config(
        tmp_path,
        [
            {"variant": "ResNet-18-512d", "label": "tiny"},
            {"variant": "ResNet-18-512d", "label": "mine", "dataset": "mine"},
        ],
    )
    snakemake(tmp_path, "--cores", "2", config=path)
    runs = tmp_path / "results" / "runs"
    first = {p.parent.parent.name for p in runs.glob("*/seed0/metrics.json")}
    before = mtimes(runs)
    again = snakemake(tmp_path, "--cores", "2", config=path)
    assert "Nothing to be done" in again.stdout + again.stderr  # nothing changed: everything reused
    assert mtimes(runs) == before

    write_npz(tmp_path / "data", flip_labels=True)  # corrected labels under the same root
    proc = snakemake(tmp_path, "--cores", "2", config=path)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("train") == 1 and counts.get("prepare_data") == 1, counts
    after = mtimes(runs)
    assert {k: v for k, v in after.items() if k in before} == before  # every earlier file untouched
    new = {p.parent.parent.name for p in runs.glob("*/seed0/metrics.json")} - first
    assert len(new) == 1 and "_mine_" in next(iter(new))  # the run of the npz row, under a new id
    table = pd.read_csv(tmp_path / "results" / "tables" / "t.csv").set_index("method")
    assert table.loc["mine", "n"] == 1 == table.loc["tiny", "n"]


BAD_RULE = """
rule bad_rule:
    output:
        "results/rules/bad_rule/seed{seed}/metrics.json",
    run:
        import json
        from gmsop.formats import rule_metrics

        m = rule_metrics("bad_rule", int(wildcards.seed), 12.5, dataset="tiny", num_classes=4, train_size=64)
        del m["final"]["top1_err"]
        with open(output[0], "w") as fh:
            json.dump(m, fh)
"""


def test_malformed_rule_metrics_stop_in_their_own_check_job(tmp_path):
    (tmp_path / "bad_rule.smk").write_text(BAD_RULE)
    path = config(
        tmp_path,
        [{"variant": "ResNet-18-512d"}, {"rule": "bad_rule", "label": "Mine"}],
        rule_files=["bad_rule.smk"],
    )
    proc = snakemake(tmp_path, "--cores", "2", config=path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    log = tmp_path / "logs" / "check_rule_metrics" / "bad_rule" / "seed0.log"
    named = "results/rules/bad_rule/seed0/metrics.json: missing required key 'final.top1_err'"
    assert named in log.read_text(), out
    assert "Error in rule check_rule_metrics" in out
    assert not (tmp_path / "logs" / "table").exists() and not (tmp_path / "results" / "checked").exists()
