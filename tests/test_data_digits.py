"""scikit-learn digits: real bundled data, upsampled, replicated to 3 channels, fixed split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmsop.data import get_dataset


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


def test_shapes_split_and_classes(digits):
    assert len(digits.train) + len(digits.val) == 1797
    assert len(digits.val) == 360  # 20% stratified
    assert digits.train.images.shape[1:] == (3, 32, 32) and digits.num_classes == 10
    assert digits.classes == tuple("0123456789")
    counts = np.bincount(digits.val.labels.numpy(), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified
    assert not digits.augment.flip  # a mirrored digit is another symbol


def test_channels_replicated_and_range_used(digits):
    x = digits.train.images
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert int(x.max()) == 255 and int(x.min()) == 0


def test_matches_source_pixels_at_native_size():
    from sklearn.datasets import load_digits

    ds = get_dataset("digits", size=8, val_fraction=0.2)
    raw = load_digits()
    ref = np.rint(raw.images * 255 / 16).astype(np.uint8)
    # each training image is one of the source images, with its own label
    first, label = ds.train.images[0, 0].numpy(), int(ds.train.labels[0])
    hits = [i for i in range(len(ref)) if np.array_equal(ref[i], first)]
    assert hits and all(raw.target[i] == label for i in hits)


def test_split_is_fixed_by_seed(digits):
    again = get_dataset("digits")
    assert torch.equal(again.val.labels, digits.val.labels)
    other = get_dataset("digits", split_seed=1)
    assert not torch.equal(other.val.images, digits.val.images)
    assert len(get_dataset("digits", val_fraction=0.5).val) == 899


def test_bad_options():
    with pytest.raises(ValueError, match="option size"):
        get_dataset("digits", size=4)
    with pytest.raises(ValueError, match="option val_fraction"):
        get_dataset("digits", val_fraction=0.9)
