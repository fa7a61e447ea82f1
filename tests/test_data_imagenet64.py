"""Downsampled ImageNet: tiny files in both release packagings, read through the real parsers."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gmsop.data import SubsetWarning, get_dataset
from gmsop.data import imagenet64 as inet
from gmsop.data.cache import default_cache_dir


@pytest.fixture(autouse=True)
def _cache_root(tmp_path_factory, monkeypatch):
    """Caches go to a fresh folder outside the data (never ~/.cache, never the test's root)."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def _pattern(n: int, size: int, offset: int) -> np.ndarray:
    """Images whose every pixel names its place: R = row, G = column, B = image index (+offset)."""
    img = np.empty((n, 3, size, size), dtype=np.uint8)
    img[:, 0] = np.arange(size, dtype=np.uint8)[:, None]  # row index
    img[:, 1] = np.arange(size, dtype=np.uint8)[None, :]  # column index
    img[:, 2] = ((np.arange(n) + offset) % 256).astype(np.uint8)[:, None, None]
    return img


def _write(path, images: np.ndarray, labels, packaging: str, protocol: int = 4) -> None:
    """One release file: data as (n, 3*S*S) R, G, B planes, labels 1-based."""
    n = len(images)
    data = images.reshape(n, -1)  # (n, 3, S, S) -> (n, 3*S*S): whole planes, as released
    mean = data.mean(axis=0)
    if packaging == "npz":
        np.savez(path, data=data, labels=np.asarray(labels), mean=mean)
    else:
        with open(path, "wb") as f:
            pickle.dump({"data": data, "labels": list(map(int, labels)), "mean": mean}, f, protocol=protocol)


def make_release(root, size=8, batches=(1, 2), n=6, n_val=4, packaging="npz", num_classes=1000):
    """A miniature release tree; returns the expected (train, val) images and 0-based labels."""
    suffix = ".npz" if packaging == "npz" else ""
    tag = "_npz" if packaging == "npz" else ""
    dirs = {
        "p1": root / f"Imagenet{size}_train_part1{tag}",
        "p2": root / f"Imagenet{size}_train_part2{tag}",
        "val": root / f"Imagenet{size}_val{tag}",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for b in batches:
        x = _pattern(n, size, offset=10 * b)
        y = (np.arange(n) * 7 + b) % num_classes + 1  # 1-based
        _write(dirs["p1" if b <= 5 else "p2"] / f"train_data_batch_{b}{suffix}", x, y, packaging)
        xs.append(x)
        ys.append(y - 1)
    xv = _pattern(n_val, size, offset=200)
    yv = np.arange(n_val) % num_classes + 1
    _write(dirs["val"] / f"val_data{suffix}", xv, yv, packaging)
    return (np.concatenate(xs), np.concatenate(ys)), (xv, yv - 1)


def _load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        return get_dataset("imagenet64", root=root, **kw)


@pytest.mark.parametrize("packaging", ["npz", "pickle"])
def test_reads_both_packagings(tmp_path, packaging):
    (xt, yt), (xv, yv) = make_release(tmp_path, packaging=packaging)
    ds = _load(tmp_path, size=8)
    assert torch.equal(ds.train.images, torch.from_numpy(xt))
    assert ds.train.labels.tolist() == yt.tolist()
    assert torch.equal(ds.val.images, torch.from_numpy(xv))
    assert ds.val.labels.tolist() == yv.tolist()
    assert ds.num_classes == 1000 and ds.input_size == (8, 8)
    assert ds.augment.flip and not ds.augment.pad  # Table 2: flip only
    np.testing.assert_allclose(ds.mean, xt.astype(np.float64).mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(ds.std, np.maximum(xt.astype(np.float64).std(axis=(0, 2, 3)), 1.0))


def _assert_rgb_planes(images: np.ndarray, red: int, green: int, blue: int) -> None:
    assert (images[:, 0] == red).all() and (images[:, 1] == green).all() and (images[:, 2] == blue).all()


def test_plane_layout_red_plane_is_channel_0(tmp_path):
    """A file whose first 4096 values (the R plane) are 255 must give channel 0 == 255."""
    n, s = 3, 64
    data = np.zeros((n, 3 * s * s), np.uint8)
    data[:, : s * s] = 255  # R plane
    data[:, s * s : 2 * s * s] = 0  # G plane
    data[:, 2 * s * s :] = 128  # B plane
    (tmp_path / "Imagenet64_train_part1_npz").mkdir()
    (tmp_path / "Imagenet64_val_npz").mkdir()
    np.savez(
        tmp_path / "Imagenet64_train_part1_npz" / "train_data_batch_1.npz",
        data=data,
        labels=np.array([1, 2, 3]),
    )
    np.savez(tmp_path / "Imagenet64_val_npz" / "val_data.npz", data=data[:1], labels=np.array([1000]))
    ds = _load(tmp_path)
    assert ds.train.images.shape == (3, 3, 64, 64)
    _assert_rgb_planes(ds.train.images.numpy(), 255, 0, 128)
    assert ds.val.labels.tolist() == [999]
    # the known mistake, reshape(N, 64, 64, 3), fails this very check: the check can fail
    wrong = data.reshape(n, s, s, 3).transpose(0, 3, 1, 2)
    with pytest.raises(AssertionError):
        _assert_rgb_planes(wrong, 255, 0, 128)


def test_pixel_positions_survive(tmp_path):
    (xt, _), _ = make_release(tmp_path, size=16, batches=(3,), n=2)
    img = _load(tmp_path, size=16).train.images.numpy()
    assert img[1, 0, 5, 9] == 5 and img[1, 1, 5, 9] == 9 and img[1, 2, 5, 9] == 31  # row, col, index


def test_labels_are_shifted_to_0_based(tmp_path):
    _, (_, yv) = make_release(tmp_path)
    ds = _load(tmp_path, size=8)
    assert ds.val.labels.min() == 0 and ds.val.labels.tolist() == yv.tolist()


def test_cache_is_reused_without_parsing(tmp_path, monkeypatch):
    make_release(tmp_path)
    first = _load(tmp_path, size=8)
    cache_dir = default_cache_dir(tmp_path, "imagenet8")
    assert (cache_dir / "meta.json").is_file() and (cache_dir / "train_images.npy").is_file()
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]

    def refuse(*a, **k):
        raise AssertionError("the release files were parsed again")

    monkeypatch.setattr(inet, "_load_raw", refuse)
    second = _load(tmp_path, size=8)
    assert torch.equal(first.train.images, second.train.images)
    assert (
        isinstance(second.train.images, torch.Tensor) and second.train.images.untyped_storage().nbytes() > 0
    )
    assert second.info["cache"] == str(cache_dir)


def test_changed_source_rebuilds_cache(tmp_path):
    make_release(tmp_path, batches=(1,))
    assert len(_load(tmp_path, size=8).train) == 6
    make_release(tmp_path, batches=(1, 2))
    assert len(_load(tmp_path, size=8).train) == 12


def test_custom_cache_dir(tmp_path):
    make_release(tmp_path / "data")
    ds = _load(tmp_path / "data", size=8, cache_dir=tmp_path / "c")
    assert (tmp_path / "c" / "meta.json").is_file() and ds.info["cache"] == str(tmp_path / "c")


def test_truncated_file_names_the_file(tmp_path):
    make_release(tmp_path)
    path = tmp_path / "Imagenet8_train_part1_npz" / "train_data_batch_2.npz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"train_data_batch_2\.npz: cannot read.*truncated"):
        _load(tmp_path, size=8)
    cache_dir = default_cache_dir(tmp_path, "imagenet8")
    assert not (cache_dir / "meta.json").exists()
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]  # nothing half-written


def test_truncated_pickle_names_the_file(tmp_path):
    make_release(tmp_path, packaging="pickle")
    path = tmp_path / "Imagenet8_val" / "val_data"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"val_data: cannot read"):
        _load(tmp_path, size=8)


@pytest.mark.parametrize(
    "bad, match", [(0, r"0 at index 0 .*1-based"), (1001, "1001 at index 0 is outside 1..1000")]
)
def test_labels_out_of_range(tmp_path, bad, match):
    make_release(tmp_path)
    d = tmp_path / "Imagenet8_val_npz"
    np.savez(d / "val_data.npz", data=np.zeros((2, 192), np.uint8), labels=np.array([bad, 1]))
    with pytest.raises(ValueError, match=f"val_data.npz: label {match}"):
        _load(tmp_path, size=8)


def test_wrong_size_hints_the_right_one(tmp_path):
    make_release(tmp_path, size=16)
    (tmp_path / "Imagenet16_val_npz").rename(tmp_path / "valdir")  # neutral folder names
    (tmp_path / "Imagenet16_train_part1_npz").rename(tmp_path / "traindir")
    with pytest.raises(ValueError, match=r"expected 3\*8\*8 = 192 .*pass size=16"):
        _load(tmp_path, size=8)


def test_wrong_dtype_and_missing_keys(tmp_path):
    make_release(tmp_path)
    d = tmp_path / "Imagenet8_val_npz"
    np.savez(d / "val_data.npz", data=np.zeros((2, 192), np.float32), labels=np.array([1, 1]))
    with pytest.raises(ValueError, match="'data' must be a uint8"):
        _load(tmp_path, size=8)
    np.savez(d / "val_data.npz", pixels=np.zeros((2, 192), np.uint8), labels=np.array([1, 1]))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['data'\]"):
        _load(tmp_path, size=8)


def test_label_count_mismatch(tmp_path):
    make_release(tmp_path)
    np.savez(
        tmp_path / "Imagenet8_val_npz" / "val_data.npz",
        data=np.zeros((3, 192), np.uint8),
        labels=np.array([1, 1]),
    )
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        _load(tmp_path, size=8)


def test_subset_is_reported_and_can_be_refused(tmp_path):
    make_release(tmp_path)
    with pytest.warns(SubsetWarning, match=r"training batches \[3, 4, 5, 6, 7, 8, 9, 10\] are missing"):
        ds = get_dataset("imagenet64", root=tmp_path, size=8)
    assert any("12 of 1,281,167" in n for n in ds.info["notes"])
    with pytest.raises(ValueError, match="require_full=True"):
        get_dataset("imagenet64", root=tmp_path, size=8, require_full=True)


def test_skips_other_resolutions_and_refuses_duplicates(tmp_path):
    make_release(tmp_path, size=8)
    make_release(tmp_path, size=16, batches=(1,), n=3)
    assert len(_load(tmp_path, size=16).train) == 3
    assert len(_load(tmp_path, size=8).train) == 12
    dup = tmp_path / "copy"
    dup.mkdir()
    (dup / "val_data.npz").write_bytes((tmp_path / "Imagenet8_val_npz" / "val_data.npz").read_bytes())
    with pytest.raises(ValueError, match="2 copies of val_data.npz"):
        _load(tmp_path, size=8)


def test_prefers_npz_over_pickle(tmp_path):
    make_release(tmp_path, packaging="pickle")
    (xt, _), _ = make_release(tmp_path, packaging="npz")
    ds = _load(tmp_path, size=8)
    assert torch.equal(ds.train.images, torch.from_numpy(xt))
    assert any("ignored in favour of" in n for n in ds.info["notes"])


def test_missing_files(tmp_path):
    with pytest.raises(ValueError, match="no train_data_batch"):
        _load(tmp_path)
    make_release(tmp_path, size=64, n=1, n_val=1)
    for p in (tmp_path / "Imagenet64_val_npz").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match="no val_data"):
        _load(tmp_path)


def test_numpy1_pickle_and_hostile_pickle(tmp_path):
    (xt, yt), _ = make_release(tmp_path, packaging="pickle", batches=(1,))
    # a protocol-2 pickle naming numpy.core.multiarray, as numpy 1.x wrote them
    path = tmp_path / "Imagenet8_train_part1" / "train_data_batch_1"
    raw = pickle.dumps({"data": xt.reshape(len(xt), -1), "labels": list(map(int, yt + 1))}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    path.write_bytes(raw)
    assert torch.equal(_load(tmp_path, size=8).train.images, torch.from_numpy(xt))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"data": Evil(), "labels": [1]}))
    with pytest.raises(ValueError, match="refusing to unpickle builtins.print"):
        _load(tmp_path, size=8)


def test_star_preset(tmp_path):
    make_release(tmp_path)
    ds = _load(tmp_path, size=8, augment="star")
    assert ds.augment.flip_double and ds.augment.pad == 4 and ds.augment.eval_pad_crop
    assert ds.input_size == (8, 8)


def test_read_only_root_is_never_written(tmp_path):
    from test_data_folder import read_only_tree, snapshot

    root = tmp_path / "data"
    make_release(root)
    before = snapshot(root)
    with read_only_tree(root):
        ds = _load(root, size=8)
        _load(root, size=8)
    assert snapshot(root) == before and root not in Path(ds.info["cache"]).parents
