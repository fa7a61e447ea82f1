"""The dataset interface: Split / AugmentSpec / Dataset validation, the registry, stats, cache files."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from gmsop.data import (
    AugmentSpec,
    Dataset,
    Split,
    cache,
    dataset_options,
    get_dataset,
    list_datasets,
    resolve_augment,
)
from gmsop.data.stats import ChannelStats, channel_mean_std


def _split(n=4, h=8, w=8, classes=3, source="mem"):
    x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8)
    y = torch.arange(n, dtype=torch.int64) % classes
    return Split(x, y, source=source)


def _dataset(**kw):
    base = dict(name="t", num_classes=3, train=_split(), val=_split(2), mean=(1, 2, 3), std=(4, 5, 6))
    base.update(kw)
    return Dataset(**base)


class TestSplit:
    def test_fields_and_len(self):
        s = _split(5, 6, 7)
        assert len(s) == 5 and s.image_size == (6, 7)

    @pytest.mark.parametrize(
        "images, labels, match",
        [
            (torch.zeros(2, 3, 4, 4, dtype=torch.float32), torch.zeros(2, dtype=torch.int64), "uint8"),
            (
                torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
                torch.zeros(2, dtype=torch.int64),
                r"\(N, 3, H, W\)",
            ),
            (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), "int64"),
            (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), r"shape \(2,\)"),
            (np.zeros((2, 3, 4, 4), np.uint8), torch.zeros(2, dtype=torch.int64), "torch tensors"),
        ],
    )
    def test_rejects_bad_arrays_naming_source(self, images, labels, match):
        with pytest.raises(ValueError, match=match) as err:
            Split(images, labels, source="/some/file.npy")
        assert "/some/file.npy" in str(err.value)


class TestAugmentSpec:
    def test_output_sizes(self):
        spec = AugmentSpec(flip=True, train_crop=96, eval_crop=96)
        assert spec.output_size((100, 100), train=True) == (96, 96)
        assert spec.output_size((100, 100), train=False) == (96, 96)
        assert AugmentSpec(pad=4).output_size((64, 64), True) == (64, 64)
        assert AugmentSpec(pad=4, eval_pad_crop=True).output_size((64, 64), False) == (64, 64)

    @pytest.mark.parametrize(
        "field, value", [("pad", -1), ("pad", 1.5), ("train_crop", 0), ("flip", 1), ("eval_crop", True)]
    )
    def test_rejects_bad_fields(self, field, value):
        with pytest.raises(ValueError, match=field):
            AugmentSpec(**{field: value})

    def test_crop_larger_than_image(self):
        with pytest.raises(ValueError, match="eval_crop=20"):
            AugmentSpec(eval_crop=20).output_size((16, 16), train=False)

    def test_resolve(self):
        presets = {"a": AugmentSpec(flip=True), "b": AugmentSpec()}
        assert resolve_augment(None, presets, "a", "d") == presets["a"]
        assert resolve_augment("b", presets, "a", "d") == presets["b"]
        assert resolve_augment({"pad": 4}, presets, "a", "d") == AugmentSpec(flip=True, pad=4)
        spec = AugmentSpec(pad=2)
        assert resolve_augment(spec, presets, "a", "d") is spec
        with pytest.raises(ValueError, match="'c'.*a, b"):
            resolve_augment("c", presets, "a", "d")
        with pytest.raises(ValueError, match="padd"):
            resolve_augment({"padd": 4}, presets, "a", "d")


class TestDataset:
    def test_valid(self):
        ds = _dataset(augment=AugmentSpec(train_crop=6, eval_crop=6))
        assert ds.input_size == (6, 6) and ds.image_size == (8, 8)
        assert ds.mean == (1.0, 2.0, 3.0)
        summary = ds.summary()
        json.dumps(summary)
        assert summary["train"]["n"] == 4 and summary["input_size"] == [6, 6]

    def test_label_out_of_range_names_source_and_value(self):
        bad = Split(
            torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 7]), source="/data/val.npy"
        )
        with pytest.raises(ValueError, match=r"/data/val.npy: label 7 at index 2 is outside \[0, 3\)"):
            _dataset(val=bad)
        neg = Split(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.tensor([-1]), source="neg")
        with pytest.raises(ValueError, match="label -1"):
            _dataset(train=neg)

    def test_mismatched_sizes_and_augment(self):
        with pytest.raises(ValueError, match="val images"):
            _dataset(val=_split(2, 6, 6))
        with pytest.raises(ValueError, match="one input size"):
            _dataset(augment=AugmentSpec(train_crop=6))  # eval would be the whole 8x8 image
        with pytest.raises(ValueError, match="std must be positive"):
            _dataset(std=(1, 0, 1))
        with pytest.raises(ValueError, match="mean"):
            _dataset(mean=(1, 2))
        with pytest.raises(ValueError, match="class names"):
            _dataset(classes=("a", "b"))


class TestRegistry:
    def test_lists_all(self):
        assert list_datasets() == ["digits", "folder", "imagenet64", "npz", "places365", "synthetic"]

    def test_unknown_name_lists_valid(self):
        with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'.*imagenet64.*synthetic"):
            get_dataset("imagenet")

    def test_unknown_option_named(self):
        with pytest.raises(ValueError, match=r"'n_trian'.*valid options: .*n_train"):
            get_dataset("synthetic", n_trian=5)

    def test_bad_option_value_named(self):
        with pytest.raises(ValueError, match="option difficulty"):
            get_dataset("synthetic", difficulty=1.5, n_train=20, n_val=5, classes=2)
        with pytest.raises(ValueError, match="option size"):
            get_dataset("synthetic", size="big")

    def test_none_options_keep_defaults(self):
        ds = get_dataset("synthetic", classes=4, n_train=8, n_val=4, size=None, seed=None)
        assert ds.image_size == (32, 32)

    def test_file_datasets_need_root(self, tmp_path):
        with pytest.raises(ValueError, match="imagenet64: needs root="):
            get_dataset("imagenet64")
        with pytest.raises(ValueError, match="does not exist"):
            get_dataset("places365", root=tmp_path / "nope")

    def test_options_listing(self):
        assert dataset_options("imagenet64")["size"] == 64


class TestStats:
    def test_matches_numpy(self):
        x = np.random.default_rng(0).integers(0, 256, (50, 3, 5, 7), dtype=np.uint8)
        mean, std = channel_mean_std(x, chunk=7)
        np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-12)

    def test_constant_channel_floored(self):
        x = np.zeros((2, 3, 4, 4), np.uint8)
        x[:, 1] = np.arange(16, dtype=np.uint8).reshape(4, 4)
        mean, std = channel_mean_std(x)
        assert std[0] == 1.0 and std[1] > 4

    def test_empty_raises(self):
        with pytest.raises(ValueError):
            ChannelStats().result()


class TestCacheFiles:
    def test_atomic_memmap_commits_on_success(self, tmp_path):
        path = tmp_path / "a.npy"
        with cache.atomic_memmap(path, (3, 3, 2, 2)) as arr:
            assert not path.exists()
            arr[:] = 9
        assert np.load(path).sum() == 9 * 36
        assert os.listdir(tmp_path) == ["a.npy"]

    def test_atomic_memmap_leaves_nothing_on_error(self, tmp_path):
        path = tmp_path / "a.npy"
        np.save(path, np.ones(3, np.uint8))
        with pytest.raises(RuntimeError):
            with cache.atomic_memmap(path, (3, 3, 2, 2)):
                raise RuntimeError("boom")
        assert os.listdir(tmp_path) == ["a.npy"]  # the old file, untouched, and no temporary
        assert np.load(path).tolist() == [1, 1, 1]

    def test_meta_roundtrip_and_fingerprint(self, tmp_path):
        src = tmp_path / "src.bin"
        src.write_bytes(b"abc")
        fp = cache.fingerprint([src], {"size": 8}, base=tmp_path)
        assert fp != cache.fingerprint([src], {"size": 16}, base=tmp_path)
        assert cache.read_meta(tmp_path, fp) is None
        cache.write_meta(tmp_path, fp, {"x": 1})
        assert cache.read_meta(tmp_path, fp)["x"] == 1
        src.write_bytes(b"abcd")  # a changed source invalidates the cache
        assert cache.read_meta(tmp_path, cache.fingerprint([src], {"size": 8}, base=tmp_path)) is None
        cache.invalidate(tmp_path)
        assert cache.read_meta(tmp_path, fp) is None

    def test_load_split_is_memmap_and_checks_shapes(self, tmp_path):
        x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
        np.save(tmp_path / "train_images.npy", x)
        np.save(tmp_path / "train_labels.npy", np.array([0, 1]))
        meta = {"splits": {"train": {"shape": [2, 3, 4, 4]}}}
        split = cache.load_split(tmp_path, "train", meta)
        assert torch.equal(split.images, torch.from_numpy(x))
        split.images[0, 0, 0, 0] = 200  # copy-on-write: never reaches the file
        assert np.load(tmp_path / "train_images.npy")[0, 0, 0, 0] == 0
        with pytest.raises(ValueError, match="meta.json says"):
            cache.load_split(tmp_path, "train", {"splits": {"train": {"shape": [3, 3, 4, 4]}}})
        raw = (tmp_path / "train_images.npy").read_bytes()
        (tmp_path / "train_images.npy").write_bytes(raw[:-10])  # truncated cache file
        with pytest.raises(ValueError, match="train_images.npy"):
            cache.load_split(tmp_path, "train", meta)

    def test_default_cache_dir_is_outside_the_data(self, tmp_path, monkeypatch):
        monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path / "c"))
        a = cache.default_cache_dir(tmp_path / "data", "folder-64-crop")
        assert (
            a.parent.parent == tmp_path / "c"
            and a.name == "folder-64-crop"
            and a.parent.name.startswith("data-")
        )
        assert (
            cache.default_cache_dir(tmp_path / "other" / "data", "folder-64-crop") != a
        )  # one folder per root
        assert (
            cache.default_cache_dir(tmp_path / "x" / ".." / "data", "folder-64-crop") == a
        )  # by absolute path
        monkeypatch.delenv("GMSOP_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache.cache_root() == tmp_path / "xdg" / "gmsop"

    def test_unwritable_cache_dir(self, tmp_path):
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            if os.access(ro, os.W_OK):
                pytest.skip("running as a user that ignores permissions")
            with pytest.raises(ValueError, match="cache_dir="):
                cache.prepare_cache_dir(ro / "c")
        finally:
            ro.chmod(0o700)


def test_dataset_is_frozen():
    ds = _dataset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.num_classes = 5  # type: ignore[misc]
