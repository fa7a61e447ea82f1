"""``gmsop data``: list, info, prepare, bench through main(argv)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gmsop.cli import main as gmsop_main
from gmsop.data.cache import default_cache_dir
from gmsop.data.cli import main


@pytest.fixture(autouse=True)
def _cache_root(tmp_path_factory, monkeypatch):
    """Caches go to a fresh folder outside the data (never ~/.cache, never the test's root)."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def _release(root):
    for d in ("Imagenet8_train_part1_npz", "Imagenet8_val_npz"):
        (root / d).mkdir(parents=True)
    data = np.random.default_rng(0).integers(0, 256, (5, 192), dtype=np.uint8)
    np.savez(root / "Imagenet8_train_part1_npz" / "train_data_batch_1.npz", data=data, labels=np.arange(1, 6))
    np.savez(root / "Imagenet8_val_npz" / "val_data.npz", data=data[:2], labels=np.array([1, 2]))


def test_list(capsys):
    assert main(["list"]) == 0
    assert "imagenet64" in capsys.readouterr().out.split()


def test_info_with_options(capsys):
    assert main(["info", "synthetic", "--classes", "5", "--n-train", "50", "--n_val=10", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_classes"] == 5 and summary["train"]["n"] == 50 and summary["val"]["n"] == 10
    assert len(summary["mean"]) == 3


def test_info_text_and_dispatcher(capsys):
    assert gmsop_main(["data", "info", "synthetic", "--classes", "3", "--n-train", "9", "--n-val", "3"]) == 0
    out = capsys.readouterr().out
    assert "9 images of 3x32x32" in out and "mean (0-255)" in out


def test_errors_are_reported_with_rc_2(capsys):
    assert main(["info", "synthetic", "--clases", "3"]) == 2
    assert "'clases'" in capsys.readouterr().err
    assert main(["info", "imagenet"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["info", "synthetic", "stray"]) == 2


def test_help_lists_dataset_options(capsys):
    assert main(["info", "places365", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--crop" in out and "96" in out


@pytest.mark.filterwarnings("ignore::gmsop.data.SubsetWarning")
def test_prepare_builds_cache_once(tmp_path, capsys):
    _release(tmp_path)
    assert main(["prepare", "imagenet64", "--root", str(tmp_path), "--size", "8"]) == 0
    assert "cache ready" in capsys.readouterr().out
    assert (default_cache_dir(tmp_path, "imagenet8") / "meta.json").is_file()
    # generated data is cached too when GMSOP_CACHE_DIR is set (as here), built once per workflow
    assert main(["prepare", "synthetic", "--classes", "3", "--n-train", "9", "--n-val", "3"]) == 0
    assert "cache ready" in capsys.readouterr().out


def test_bench(capsys):
    argv = [
        "bench",
        "synthetic",
        "--classes",
        "3",
        "--n-train",
        "300",
        "--n-val",
        "3",
        "--batch-size",
        "32",
        "--seconds",
        "0.1",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["images_per_s"] > 0
