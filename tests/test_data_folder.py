"""ImageFolder trees: real PNG/JPEG files, resized and cached."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmsop.data import get_dataset, imagefiles


@pytest.fixture(autouse=True)
def _cache_root(tmp_path_factory, monkeypatch):
    """Caches go to a fresh folder outside the data (never ~/.cache, never the test's root)."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def make_tree(root, classes=("cat", "dog"), per_class=2, size=(20, 10)):
    """root/{train,val}/<class>/<i>.png; class k is a solid colour (k*100, 255 - k*100, 7)."""
    for split in ("train", "val"):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", size, (k * 100, 255 - k * 100, 7)).save(d / f"{i}.png")
    (root / "train" / classes[0] / "notes.txt").write_text("not an image")


def test_reads_tree(tmp_path):
    make_tree(tmp_path)
    ds = get_dataset("folder", root=tmp_path, size=8, workers=1)
    assert ds.classes == ("cat", "dog") and ds.num_classes == 2
    assert ds.train.images.shape == (4, 3, 8, 8)  # notes.txt ignored
    assert ds.train.labels.tolist() == [0, 0, 1, 1]
    img = ds.train.images.numpy()
    assert (img[2, 0] == 100).all() and (img[2, 1] == 155).all() and (img[2, 2] == 7).all()  # PNG: exact
    assert ds.augment.flip and ds.input_size == (8, 8)


def test_fit_crop_keeps_aspect_and_stretch_does_not(tmp_path):
    make_tree(tmp_path, per_class=1)
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 255  # white centre third of a wide image
    Image.fromarray(img).save(tmp_path / "train" / "cat" / "0.png")
    crop = get_dataset("folder", root=tmp_path, size=10, fit="crop", workers=1).train.images[0].numpy()
    stretch = get_dataset("folder", root=tmp_path, size=10, fit="stretch", workers=1).train.images[0].numpy()
    assert crop.mean() > 240  # the centre crop is the white part
    assert 60 < stretch.mean() < 120  # the whole width squeezed in: about a third white


def test_val_class_absent_from_train(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "val" / "emu").mkdir()
    with pytest.raises(ValueError, match="emu is a class absent from"):
        get_dataset("folder", root=tmp_path, workers=1)


def test_empty_class_and_missing_split(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "train" / "eel").mkdir()
    with pytest.raises(ValueError, match="eel has no images"):
        get_dataset("folder", root=tmp_path, workers=1)
    (tmp_path / "train" / "eel").rmdir()
    import shutil

    shutil.rmtree(tmp_path / "val")
    with pytest.raises(ValueError, match="missing .*val"):
        get_dataset("folder", root=tmp_path, workers=1)


def test_corrupt_image_named(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "val" / "dog" / "1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"dog/1\.png: cannot decode"):
        get_dataset("folder", root=tmp_path, workers=1)


def test_every_corrupt_image_named_in_one_message(tmp_path):
    make_tree(tmp_path)
    bad = [tmp_path / "train" / "cat" / "0.png", tmp_path / "train" / "dog" / "1.png"]
    for path in bad:
        path.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"folder at .*: 2 of 4 train image files cannot be used") as exc:
        get_dataset("folder", root=tmp_path, workers=1)
    assert all(f"{path}: cannot decode" in str(exc.value) for path in bad)


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    make_tree(tmp_path)
    first = get_dataset("folder", root=tmp_path, size=8, workers=1)
    real = imagefiles.decode_resize

    def refuse(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefiles, "decode_resize", refuse)
    assert torch.equal(
        get_dataset("folder", root=tmp_path, size=8, workers=1).train.images, first.train.images
    )
    monkeypatch.setattr(imagefiles, "decode_resize", real)
    Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "train" / "dog" / "new.png")  # a new image
    assert len(get_dataset("folder", root=tmp_path, size=8, workers=1).train) == 5


def test_bad_fit(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(ValueError, match="option fit"):
        get_dataset("folder", root=tmp_path, fit="squash")


def snapshot(root: Path) -> list[tuple]:
    """Every path under ``root`` (and ``root`` itself) with its size and modification time."""
    return sorted(
        (str(p.relative_to(root)), p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    )


@contextlib.contextmanager
def read_only_tree(root: Path):
    """Make ``root`` read-only for the duration (dirs 0o555, files 0o444) and yield whether the
    process really cannot write it (root ignores permissions; the tests then rely on a snapshot:
    nothing may be written into the data folder at all, whoever runs them)."""
    paths = [root, *root.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in sorted(paths, key=lambda q: len(q.parts), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield not os.access(root, os.W_OK)
    finally:
        for p in sorted(paths, key=lambda q: len(q.parts)):
            p.chmod(modes[p] & 0o7777)


def test_read_only_root_is_never_written(tmp_path):
    """The cache goes under GMSOP_CACHE_DIR (the workflow: results/cache), never into the data."""
    root = tmp_path / "data"
    make_tree(root)
    before = snapshot(root)
    with read_only_tree(root):
        first = get_dataset("folder", root=root, size=8, workers=1)
        again = get_dataset("folder", root=root, size=8, workers=1)  # reuses the cache
    assert snapshot(root) == before
    cache_dir = Path(first.info["cache"])
    assert (cache_dir / "meta.json").is_file() and root not in cache_dir.parents
    assert cache_dir.is_relative_to(os.environ["GMSOP_CACHE_DIR"])
    assert torch.equal(first.train.images, again.train.images)


def test_two_roots_get_two_caches(tmp_path):
    make_tree(tmp_path / "a", classes=("cat", "dog"))
    make_tree(tmp_path / "b", classes=("emu", "owl"))
    a = get_dataset("folder", root=tmp_path / "a", size=8, workers=1)
    b = get_dataset("folder", root=tmp_path / "b", size=8, workers=1)
    assert a.info["cache"] != b.info["cache"] and b.classes == ("emu", "owl")
