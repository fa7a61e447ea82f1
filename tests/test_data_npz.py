"""User arrays in .npz files: layout detection, ambiguity, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmsop.data import get_dataset
from gmsop.data.npz import to_nchw


def _nchw(n, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)


def test_folder_with_train_and_val_nchw(tmp_path):
    x, y = _nchw(8), np.arange(8) % 4
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=_nchw(3, seed=1), y=np.array([0, 1, 3], dtype=np.int16))
    ds = get_dataset("npz", root=tmp_path)
    assert torch.equal(ds.train.images, torch.from_numpy(x))
    assert ds.num_classes == 4 and ds.val.labels.dtype == torch.int64
    np.testing.assert_allclose(ds.mean, x.astype(np.float64).mean(axis=(0, 2, 3)))


def test_single_file_nhwc_is_transposed(tmp_path):
    x = _nchw(4)
    nhwc = x.transpose(0, 2, 3, 1).copy()  # (N, H, W, 3)
    np.savez(tmp_path / "d.npz", x_train=nhwc, y_train=[0, 1, 0, 1], x_val=nhwc[:2], y_val=[1, 0])
    ds = get_dataset("npz", root=tmp_path / "d.npz")
    assert torch.equal(ds.train.images, torch.from_numpy(x))
    assert ds.train.images[1, 0, 2, 3] == nhwc[1, 2, 3, 0]  # channel 0 = first value of each pixel


def test_ambiguous_layout_refused_then_resolved(tmp_path):
    x = _nchw(4, h=7, w=3)  # (4, 3, 7, 3): axis 1 and axis 3 are both 3
    np.savez(tmp_path / "d.npz", x_train=x, y_train=[0, 1, 0, 1], x_val=x, y_val=[0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"ambiguous.*layout='NCHW' or layout='NHWC'"):
        get_dataset("npz", root=tmp_path / "d.npz")
    assert get_dataset("npz", root=tmp_path / "d.npz", layout="NCHW").image_size == (7, 3)
    assert get_dataset("npz", root=tmp_path / "d.npz", layout="NHWC").image_size == (3, 7)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((2, 3, 4, 4), np.float32), "must be uint8"),
        (np.zeros((2, 4), np.uint8), r"grayscale \(N, H, W\)"),
        (np.zeros((2, 4, 4, 4), np.uint8), "no axis of 3 colour channels"),
        (np.zeros((2, 1, 4, 1), np.uint8), r"ambiguous \(axis 1 and axis 3 are both 1\)"),
    ],
)
def test_bad_images(x, match):
    with pytest.raises(ValueError, match=match):
        to_nchw(x, "auto", "src")


@pytest.mark.parametrize("shape", [(5, 6, 4), (5, 1, 6, 4), (5, 6, 4, 1)])
def test_grayscale_is_replicated_to_three_channels(tmp_path, shape):
    grey = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)  # (N, H, W)
    x = grey.reshape(shape)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=[0, 1, 0, 1, 1], x_val=x[:2], y_val=[1, 0])
    ds = get_dataset("npz", root=tmp_path / "d.npz")
    assert ds.train.images.shape == (5, 3, 6, 4) and ds.image_size == (6, 4)
    for c in range(3):  # R = G = B = the grey value
        assert torch.equal(ds.train.images[:, c], torch.from_numpy(grey))
    assert ds.mean[0] == ds.mean[1] == ds.mean[2] and ds.info["channels"] == 1
    assert "grayscale" in ds.info["notes"][0]


def test_grayscale_trains_unchanged_models(tmp_path):
    """A grey dataset feeds the unchanged 3-channel models (one forward pass)."""
    import gmsop

    grey = np.random.default_rng(1).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=grey, y=[0, 1, 0, 1])
    np.savez(tmp_path / "val.npz", x=grey[:2, None], y=[0, 1])  # (N, 1, H, W)
    ds = get_dataset("npz", root=tmp_path)
    model = gmsop.build_model("ResNet-18", num_classes=ds.num_classes, width_mult=0.125).eval()
    assert model(ds.train.images.float()).logits.shape == (4, 2)


def test_layout_mismatch():
    with pytest.raises(ValueError, match="layout NHWC needs"):
        to_nchw(np.zeros((2, 3, 4, 5), np.uint8), "NHWC", "src")


def test_label_problems(tmp_path):
    x = _nchw(3)
    np.savez(tmp_path / "val.npz", x=x, y=[0, 1, 1])
    np.savez(tmp_path / "train.npz", x=x, y=[0, 1])
    with pytest.raises(ValueError, match=r"train.npz\[y\]: 2 labels for 3 images"):
        get_dataset("npz", root=tmp_path)
    np.savez(tmp_path / "train.npz", x=x, y=[0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="1-D integer"):
        get_dataset("npz", root=tmp_path)
    np.savez(tmp_path / "train.npz", x=x, y=[0, 1, 5])
    with pytest.raises(ValueError, match=r"label 5 at index 2 is outside \[0, 3\)"):
        get_dataset("npz", root=tmp_path, num_classes=3)
    np.savez(tmp_path / "train.npz", x=x, y=[0, -1, 1])
    with pytest.raises(ValueError, match="negative label -1"):
        get_dataset("npz", root=tmp_path)


def test_missing_and_truncated_files(tmp_path):
    x = _nchw(3)
    np.savez(tmp_path / "train.npz", x=x, y=[0, 1, 1])
    with pytest.raises(ValueError, match=r"missing .*val.npz"):
        get_dataset("npz", root=tmp_path)
    np.savez(tmp_path / "val.npz", images=x, y=[0, 1, 1])
    with pytest.raises(ValueError, match=r"val.npz: missing key\(s\) \['x'\]"):
        get_dataset("npz", root=tmp_path)
    raw = (tmp_path / "train.npz").read_bytes()
    (tmp_path / "train.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"train.npz: cannot read"):
        get_dataset("npz", root=tmp_path)


def test_read_only_root_is_never_written(tmp_path):
    from test_data_folder import read_only_tree, snapshot

    np.savez(tmp_path / "train.npz", x=_nchw(4), y=[0, 1, 0, 1])
    np.savez(tmp_path / "val.npz", x=_nchw(2), y=[1, 0])
    before = snapshot(tmp_path)
    with read_only_tree(tmp_path):
        assert len(get_dataset("npz", root=tmp_path).train) == 4
    assert snapshot(tmp_path) == before
