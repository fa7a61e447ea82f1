"""Results follow the data and survive mistakes: a file-backed dataset is identified by its files'
content (run ids, resume), a finished metrics.json is never deleted by a rerun that cannot start,
and a cut checkpoint falls back to the previous one or stops saying what to do."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gmsop.data import content_fingerprint
from gmsop.engine import TrainConfig, train
from gmsop.engine.checkpoint import CheckpointMismatchError
from gmsop.experiments import make_plan

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Content digests and dataset caches in the test's own folder, never in ~/.cache."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(before)


def write_npz(root: Path, labels=(0, 1, 2, 3, 0, 1, 2, 3), seed: int = 0) -> Path:
    """train.npz and val.npz of 8 + 4 random 8x8 colour images (4 classes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (len(labels), 3, 8, 8), dtype=np.uint8)
    np.savez(root / "train.npz", x=x, y=np.asarray(labels))
    np.savez(root / "val.npz", x=rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8), y=np.arange(4))
    return root


def two_dataset_config(root: Path) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["datasets"]["mine"] = {"name": "npz", "root": str(root)}
    cfg["defaults"]["batch_size"] = 4
    cfg["experiments"] = {
        "t": {
            "kind": "table",
            "seeds": [0],
            "rows": [
                {"variant": "ResNet-18-512d", "label": "tiny"},
                {"variant": "ResNet-18-512d", "label": "mine", "dataset": "mine"},
            ],
        }
    }
    return cfg


def run_ids(cfg: dict) -> dict[str, str]:
    return {r.label: r.run for r in make_plan(cfg).experiments["t"].rows}


# --- data identity by content --------------------------------------------------------------


def test_replaced_npz_gives_new_run_ids_only_for_its_rows_and_touching_changes_nothing(tmp_path):
    root = write_npz(tmp_path / "data")
    cfg = two_dataset_config(root)
    first = run_ids(cfg)
    assert run_ids(cfg) == first  # nothing changed: the same runs
    train_npz = root / "train.npz"
    os.utime(train_npz, ns=(train_npz.stat().st_atime_ns, train_npz.stat().st_mtime_ns + 10**9))
    assert run_ids(cfg) == first  # touched, same bytes: the digest is recomputed, the same
    write_npz(root, labels=(1, 0, 2, 3, 0, 1, 2, 3))  # corrected labels, same shapes
    second = run_ids(cfg)
    assert second["tiny"] == first["tiny"] and second["mine"] != first["mine"]
    spec = make_plan(cfg).runs[second["mine"]]
    assert spec["data"]["content"] == content_fingerprint("npz", root)
    assert spec["data"]["content"].startswith("sha256:")
    assert "content" not in make_plan(cfg).runs[second["tiny"]]["data"]  # generated data: its options only


def test_moving_the_data_keeps_its_identity(tmp_path):
    a = write_npz(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    b.parent.mkdir()
    a.rename(b)
    assert content_fingerprint("npz", b) == content_fingerprint("npz", write_npz(tmp_path / "c"))


def test_digests_are_cached_by_size_and_mtime(tmp_path, cache_dir):
    root = write_npz(tmp_path / "data")
    content_fingerprint("npz", root)
    store = next(cache_dir.rglob("content.json"))
    digests = json.loads(store.read_text())
    assert sorted(digests) == ["train.npz", "val.npz"]
    # a digest is trusted while size and mtime match: a planted digest is returned as cached
    digests["val.npz"][2] = "0" * 64
    store.write_text(json.dumps(digests))
    planted = content_fingerprint("npz", root)
    os.utime(root / "val.npz", ns=(1, 1))  # a changed mtime makes it read the file again
    assert content_fingerprint("npz", root) != planted
    assert json.loads(store.read_text())["val.npz"][2] != "0" * 64


def test_folder_content_covers_every_image(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (6, 6), (10, 20, 30)).save(tmp_path / split / c / "0.png")
    before = content_fingerprint("folder", tmp_path)
    Image.new("RGB", (6, 6), (11, 20, 30)).save(tmp_path / "val" / "b" / "0.png")
    assert content_fingerprint("folder", tmp_path) != before


# --- a finished result survives a rerun that cannot start -----------------------------------


def _npz_config(out: Path, root: Path, **kw) -> TrainConfig:
    return TrainConfig(
        variant="ResNet-18",
        dataset="npz",
        data_root=str(root),
        batch_size=4,
        schedule="0.05:2",
        deterministic=True,
        out=str(out),
        progress="none",
        overrides={"width_mult": 0.125},
        **kw,
    )


def test_mistyped_data_root_keeps_the_finished_metrics(tmp_path, capsys):
    from gmsop.engine.train_cli import main

    root = write_npz(tmp_path / "data")
    out = tmp_path / "run" / "metrics.json"
    train(_npz_config(out, root))
    before = out.read_bytes()
    args = [
        "--variant",
        "ResNet-18",
        "--dataset",
        "npz",
        "--data-root",
        str(tmp_path / "dta"),
        "--batch-size",
        "4",
        "--schedule",
        "0.05:2",
        "--deterministic",
        "--override",
        "width_mult=0.125",
        "--progress",
        "none",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert f"{tmp_path / 'dta'} does not exist" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_resume_refuses_other_data_under_another_root(tmp_path):
    out = tmp_path / "run" / "metrics.json"
    train(_npz_config(out, write_npz(tmp_path / "a")))
    before = out.read_bytes()
    other = write_npz(tmp_path / "b", labels=(3, 2, 1, 0, 3, 2, 1, 0))
    mismatch = r"data_content: checkpoint 'sha256:\w+' vs now 'sha256:\w+'"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        train(_npz_config(out, other))
    assert out.read_bytes() == before
    moved = tmp_path / "moved"
    (tmp_path / "a").rename(moved)  # the same files elsewhere: the finished run is reported again
    assert train(_npz_config(out, moved))["final"] == json.loads(before)["final"]


# --- a checkpoint cut short ----------------------------------------------------------------


def _synthetic(out: Path) -> TrainConfig:
    return TrainConfig(
        variant="ResNet-18",
        dataset_options={"classes": 4, "n_train": 32, "n_val": 8, "size": 8},
        batch_size=8,
        schedule="0.05:2",
        deterministic=True,
        out=str(out),
        progress="lines",
        overrides={"width_mult": 0.125},
    )


def _strip(m: dict) -> dict:
    timing = ("epoch_time_s", "train_img_s", "train_time_s")
    return {
        "final": {k: v for k, v in m["final"].items() if k not in timing},
        "epochs": [{k: v for k, v in e.items() if k not in timing} for e in m["epochs"]],
    }


def test_truncated_last_checkpoint_resumes_from_the_previous_one(tmp_path, capsys):
    straight = train(_synthetic(tmp_path / "a" / "metrics.json"))
    ckpt = tmp_path / "a" / "ckpt"
    assert torch.load(ckpt / "previous.pt", weights_only=True)["epoch"] == 1
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 2
    last = ckpt / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    (tmp_path / "a" / "metrics.json").unlink()
    capsys.readouterr()
    again = train(_synthetic(tmp_path / "a" / "metrics.json"))
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {last}" in err
    assert f"resuming from the previous checkpoint {ckpt / 'previous.pt'}" in err
    assert "after epoch 1/2" in err
    assert _strip(again) == _strip(straight)  # epoch 2 retrained from epoch 1's state: the same numbers
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert torch.load(ckpt / "previous.pt", weights_only=True)["epoch"] == 1  # never the unreadable file
    assert (ckpt / "last.pt.unreadable").is_file()


def test_no_readable_checkpoint_stops_naming_the_file_and_what_to_do(tmp_path):
    out = tmp_path / "metrics.json"
    train(_synthetic(out))
    before = out.read_bytes()
    for name in ("last.pt", "previous.pt"):
        (tmp_path / "ckpt" / name).write_bytes(b"PK\x03\x04 cut")
    last = tmp_path / "ckpt" / "last.pt"
    with pytest.raises(
        ValueError,
        match=rf"cannot read checkpoint {last}.*previous checkpoint cannot be "
        rf"used either.*delete {last}",
    ):
        train(_synthetic(out))
    assert out.read_bytes() == before


def test_a_checkpoint_that_does_not_read_back_replaces_nothing(tmp_path, monkeypatch):
    from gmsop.engine import checkpoint

    path = tmp_path / "last.pt"
    state = {
        "fingerprint": {},
        "epoch": 1,
        "model": {},
        "optimizer": {},
        "rng": {},
        "records": [],
        "totals": {},
    }
    checkpoint.save_checkpoint(path, state)
    good = path.read_bytes()
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, fh: fh.write(b"PK\x03\x04 disk full"))
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        checkpoint.save_checkpoint(path, {**state, "epoch": 2})
    assert path.read_bytes() == good and not (tmp_path / "previous.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
