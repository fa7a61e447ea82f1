"""Places365-Standard: list files and real JPEGs written with PIL, read through the real parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmsop.data import get_dataset, imagefiles
from gmsop.data.cache import default_cache_dir
from gmsop.data.places365 import read_categories


@pytest.fixture(autouse=True)
def _cache_root(tmp_path_factory, monkeypatch):
    """Caches go to a fresh folder outside the data (never ~/.cache, never the test's root)."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


# solid colours survive JPEG compression to within a few grey levels
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
CLASSES = ["/a/airfield", "/b/bakery/shop", "/c/canyon"]


def make_places(
    root, train_dir="data_256_standard", val_dir="val_256", per_class=2, n_val=3, size=(256, 256)
):
    """A miniature Places365 tree; image i of class c is a solid COLOURS[c] JPEG."""
    (root / "categories_places365.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(CLASSES)))
    lines = []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            rel = f"{name}/{i:08d}.jpg"
            path = root / train_dir / rel.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, COLOURS[c]).save(path, quality=95)
            lines.append(f"{rel} {c}\n")
    (root / "places365_train_standard.txt").write_text("".join(lines))
    (root / val_dir).mkdir(parents=True, exist_ok=True)
    vlines = []
    for i in range(n_val):
        name = f"Places365_val_{i + 1:08d}.jpg"
        Image.new("RGB", size, COLOURS[i % 3]).save(root / val_dir / name, quality=95)
        vlines.append(f"{name} {i % 3}\n")
    (root / "places365_val.txt").write_text("".join(vlines))


def _mean_colour(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(2, 3)).numpy()  # (N, 3)


def test_reads_lists_and_jpegs(tmp_path):
    make_places(tmp_path)
    ds = get_dataset("places365", root=tmp_path, workers=1)
    assert ds.num_classes == 3 and ds.classes == tuple(CLASSES)
    assert ds.train.images.shape == (6, 3, 100, 100)  # resized to 100x100
    assert ds.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.val.labels.tolist() == [0, 1, 2]
    colours = _mean_colour(ds.train.images)
    expected = np.repeat(np.array(COLOURS, dtype=np.float64), 2, axis=0)
    assert np.abs(colours - expected).max() < 6  # red images have channel 0 ~ 255, etc.
    # the paper's augmentation: random 96 crop + flip at training, centre 96 crop at evaluation
    assert ds.augment.flip and ds.augment.train_crop == 96 and ds.augment.eval_crop == 96
    assert ds.input_size == (96, 96)
    assert any("subset" in n for n in ds.info["notes"])


def test_resize_is_bicubic_like_pil(tmp_path):
    make_places(tmp_path, per_class=1, n_val=1)
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    path = tmp_path / "data_256_standard" / "a" / "airfield" / "00000000.jpg"
    Image.fromarray(img).save(path.with_suffix(".png"))
    (tmp_path / "places365_train_standard.txt").write_text(
        "/a/airfield/00000000.png 0\n/b/bakery/shop/00000000.jpg 1\n/c/canyon/00000000.jpg 2\n"
    )
    ds = get_dataset("places365", root=tmp_path, workers=1)
    expected = np.asarray(Image.fromarray(img).resize((100, 100), Image.Resampling.BICUBIC)).transpose(
        2, 0, 1
    )
    assert np.array_equal(ds.train.images[0].numpy(), expected)


def test_alternative_folders_and_size(tmp_path):
    make_places(tmp_path, train_dir="data_256", val_dir="val_256", per_class=1, n_val=1, size=(40, 30))
    ds = get_dataset("places365", root=tmp_path, size=20, crop=16, workers=1)
    assert ds.train.images.shape == (3, 3, 20, 20) and ds.input_size == (16, 16)


def test_parallel_workers_match_serial(tmp_path):
    make_places(tmp_path, per_class=2)
    serial = get_dataset("places365", root=tmp_path, workers=1, cache_dir=tmp_path / "c1")
    old = imagefiles._CHUNK
    imagefiles._CHUNK = 2  # several tasks, so the process pool is really used
    try:
        parallel = get_dataset("places365", root=tmp_path, workers=2, cache_dir=tmp_path / "c2")
    finally:
        imagefiles._CHUNK = old
    assert torch.equal(serial.train.images, parallel.train.images)
    assert serial.mean == parallel.mean


def test_cache_reused_without_decoding(tmp_path, monkeypatch):
    make_places(tmp_path)
    first = get_dataset("places365", root=tmp_path, workers=1)

    def refuse(*a, **k):
        raise AssertionError("images decoded again")

    monkeypatch.setattr(imagefiles, "decode_resize", refuse)
    second = get_dataset("places365", root=tmp_path, workers=1)
    assert torch.equal(first.val.images, second.val.images)


def _count_decodes(monkeypatch) -> list[str]:
    """Record every file decoded (workers=1 decodes in this process)."""
    seen: list[str] = []
    real = imagefiles.decode_resize

    def counting(path, *a, **k):
        seen.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(imagefiles, "decode_resize", counting)
    return seen


def test_every_missing_image_is_named_in_one_message_before_decoding(tmp_path, monkeypatch):
    make_places(tmp_path)
    gone = [
        tmp_path / "data_256_standard" / "b" / "bakery" / "shop" / "00000001.jpg",
        tmp_path / "val_256" / "Places365_val_00000002.jpg",
    ]
    for path in gone:
        path.unlink()
    decoded = _count_decodes(monkeypatch)
    with pytest.raises(ValueError, match=r"places365 at .*: 2 of 9 listed image files cannot be used") as exc:
        get_dataset("places365", root=tmp_path, workers=1)
    assert all(f"missing: {path}" in str(exc.value) for path in gone)
    assert decoded == []  # found before anything was decoded
    assert not (default_cache_dir(tmp_path, "places365-100") / "meta.json").exists()


def test_undecodable_images_all_named_and_the_converted_rows_kept(tmp_path, monkeypatch):
    make_places(tmp_path)
    clean = get_dataset(
        "places365", root=tmp_path, workers=1, cache_dir=tmp_path.parent / f"{tmp_path.name}-clean"
    )
    bad = [
        tmp_path / "data_256_standard" / "a" / "airfield" / "00000000.jpg",
        tmp_path / "data_256_standard" / "c" / "canyon" / "00000001.jpg",
    ]
    good = {p: p.read_bytes() for p in bad}
    for path in bad:
        path.write_bytes(good[path][:100])
    with pytest.raises(
        ValueError,
        match=r"2 of 6 train image files cannot be used; the 4 others are "
        r"converted and kept",
    ) as exc:
        get_dataset("places365", root=tmp_path, workers=1)
    assert all(f"{path}: cannot decode" in str(exc.value) for path in bad)
    cache_dir = default_cache_dir(tmp_path, "places365-100")
    assert (cache_dir / "train_partial.npy").is_file() and not (cache_dir / "meta.json").exists()
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]
    for path, data in good.items():
        path.write_bytes(data)
    decoded = _count_decodes(monkeypatch)
    ds = get_dataset("places365", root=tmp_path, workers=1)
    assert sorted(decoded) == sorted(map(str, bad))  # only the two: the rest was kept
    assert torch.equal(ds.train.images, clean.train.images) and torch.equal(ds.val.images, clean.val.images)
    assert ds.mean == clean.mean and ds.std == clean.std
    assert not (cache_dir / "train_partial.npy").exists()


def test_bad_images_of_both_splits_in_one_message_and_the_rest_kept(tmp_path, monkeypatch):
    make_places(tmp_path)
    val = tmp_path / "val_256" / "Places365_val_00000003.jpg"
    train = tmp_path / "data_256_standard" / "b" / "bakery" / "shop" / "00000000.jpg"
    data = {p: p.read_bytes() for p in (val, train)}
    for path in data:
        path.write_bytes(data[path][:100])
    both = r"1 of 6 train image files cannot be used.*\n.*\n.*1 of 3 val image files"
    with pytest.raises(ValueError, match=both) as exc:
        get_dataset("places365", root=tmp_path, workers=1)
    assert f"{val}: cannot decode" in str(exc.value) and f"{train}: cannot decode" in str(exc.value)
    val.write_bytes(data[val])
    decoded = _count_decodes(monkeypatch)
    with pytest.raises(ValueError, match=r"1 of 6 train image files") as exc:
        get_dataset("places365", root=tmp_path, workers=1)
    assert sorted(decoded) == sorted([str(train), str(val)])  # the two bad ones tried again, nothing else
    assert "val image files" not in str(exc.value)  # the val split now converted (and kept)
    train.write_bytes(data[train])
    decoded.clear()
    get_dataset("places365", root=tmp_path, workers=1)
    assert decoded == [str(train)]  # the training split's other rows and the whole val split copied


def test_truncated_jpeg(tmp_path):
    make_places(tmp_path)
    path = tmp_path / "data_256_standard" / "c" / "canyon" / "00000001.jpg"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"canyon/00000001\.jpg: cannot decode"):
        get_dataset("places365", root=tmp_path, workers=1)


def test_label_out_of_range_names_line(tmp_path):
    make_places(tmp_path)
    text = (
        (tmp_path / "places365_val.txt")
        .read_text()
        .replace("Places365_val_00000002.jpg 1", "Places365_val_00000002.jpg 3")
    )
    (tmp_path / "places365_val.txt").write_text(text)
    with pytest.raises(ValueError, match=r"places365_val.txt:2: class index 3 is outside 0..2"):
        get_dataset("places365", root=tmp_path, workers=1)


def test_malformed_lists(tmp_path):
    make_places(tmp_path)
    (tmp_path / "places365_train_standard.txt").write_text("/a/airfield/00000000.jpg zero\n")
    with pytest.raises(ValueError, match=r"places365_train_standard.txt:1: expected"):
        get_dataset("places365", root=tmp_path, workers=1)
    (tmp_path / "categories_places365.txt").write_text("/a/a 0\n/b/b 2\n")
    with pytest.raises(ValueError, match="indices must be 0..1"):
        read_categories(tmp_path)
    (tmp_path / "categories_places365.txt").unlink()
    with pytest.raises(ValueError, match="missing list file"):
        get_dataset("places365", root=tmp_path, workers=1)


def test_missing_image_folder(tmp_path):
    make_places(tmp_path)
    (tmp_path / "val_256").rename(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="no val image folder.*val_256, val_large"):
        get_dataset("places365", root=tmp_path, workers=1)


def test_bad_crop(tmp_path):
    make_places(tmp_path, per_class=1, n_val=1)
    with pytest.raises(ValueError, match="option crop"):
        get_dataset("places365", root=tmp_path, crop=101)


def test_read_only_root_is_never_written(tmp_path):
    from test_data_folder import read_only_tree, snapshot

    root = tmp_path / "data"
    root.mkdir()
    make_places(root, per_class=1, n_val=1, size=(32, 32))
    before = snapshot(root)
    with read_only_tree(root):
        ds = get_dataset("places365", root=root, workers=1, size=16, crop=16)
    assert snapshot(root) == before and root not in Path(ds.info["cache"]).parents


def test_require_full_refuses_a_partial_download(tmp_path):
    """The paper's setting is the complete release: ``require_full`` stops on a subset (as for
    imagenet64) instead of training on it with a note."""
    make_places(tmp_path, per_class=1, n_val=1)
    with pytest.raises(
        ValueError,
        match=r"places365: require_full=True but .* holds a subset: subset: 3 of "
        r"1,803,460 train images; subset: 1 of 36,500 val images",
    ):
        get_dataset("places365", root=tmp_path, workers=1, require_full=True)
    assert get_dataset("places365", root=tmp_path, workers=1).train.images.shape[0] == 3  # allowed without it
