"""The generated default dataset: determinism, the design's stated properties, knob validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmsop.data import get_dataset
from gmsop.data.synthetic import SyntheticSpec, generate_split, make_bank

SMALL = dict(classes=10, n_train=400, n_val=200)


@pytest.fixture(scope="module")
def small():
    return get_dataset("synthetic", **SMALL)


def test_shapes_dtypes_and_interface(small):
    assert small.num_classes == 10
    assert small.train.images.shape == (400, 3, 32, 32) and small.train.images.dtype == torch.uint8
    assert small.val.images.shape == (200, 3, 32, 32)
    assert small.train.labels.dtype == torch.int64
    assert small.input_size == (32, 32)
    assert not small.augment.flip  # mirrored oriented textures could be another mode
    assert np.shape(small.info["class_modes"]) == (1, 10, 3)  # contexts x classes x modes_per_class


def test_same_seed_same_bytes_other_seed_differs(small):
    again = get_dataset("synthetic", **SMALL)
    assert torch.equal(small.train.images, again.train.images)
    assert torch.equal(small.val.labels, again.val.labels)
    other = get_dataset("synthetic", seed=1, **SMALL)
    assert not torch.equal(small.train.images, other.train.images)


def test_val_independent_of_n_train(small):
    more = get_dataset("synthetic", classes=10, n_train=600, n_val=200)
    assert torch.equal(small.val.images, more.val.images)


def test_labels_balanced(small):
    counts = np.bincount(small.train.labels.numpy(), minlength=10)
    assert counts.tolist() == [40] * 10


def test_equal_channel_means_and_variances_across_classes():
    spec = SyntheticSpec(classes=8, size=32)
    x, y, _, _ = generate_split(spec, "train", 1600)
    xf = x.astype(np.float64)
    means = np.array([xf[y == c].mean(axis=(0, 2, 3)) for c in range(8)])  # (classes, 3)
    stds = np.array([xf[y == c].std(axis=(0, 2, 3)) for c in range(8)])
    assert np.abs(means - 128).max() < 1.5  # 200 images x 1024 px per class: sampling noise only
    assert np.abs(stds - 42.5).max() < 1.5
    clipped = ((x == 0) | (x == 255)).mean()
    assert clipped < 0.01


def test_every_image_shows_exactly_its_class_mode_set_in_its_context():
    spec = SyntheticSpec(classes=12, regions=5, contexts=3)
    bank = make_bank(spec)
    _, y, z, mode_map = generate_split(spec, "val", 300, bank)
    assert set(z.tolist()) == {0, 1, 2}
    for i in range(300):
        assert set(np.unique(mode_map[i]).tolist()) == set(bank.class_modes[z[i], y[i]].tolist())


def test_contexts_balanced_within_classes_and_give_classes_other_mode_sets():
    spec = SyntheticSpec(classes=10, contexts=2)
    bank = make_bank(spec)
    _, y, z, _ = generate_split(spec, "train", 400, bank)
    for c in range(10):
        assert np.bincount(z[y == c], minlength=2).tolist() == [20, 20]
    # the same class stands for other textures in the other context: a class has two looks
    same = [set(bank.class_modes[0, c]) == set(bank.class_modes[1, c]) for c in range(10)]
    assert sum(same) <= 1
    # context 0's noise is white; context 1's is coloured with unit variances (a correlation)
    np.testing.assert_allclose(bank.noise_chol[0], np.eye(3))
    corr = bank.noise_chol[1] @ bank.noise_chol[1].T
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-5)
    assert np.abs(corr - np.eye(3)).max() > 0.1


def test_one_context_is_the_context_free_design():
    """contexts=1: context 0 everywhere, and context 0's images do not change when contexts grow."""
    one = SyntheticSpec(classes=10, contexts=1)
    two = SyntheticSpec(classes=10, contexts=2)
    x1, y1, z1, _ = generate_split(one, "val", 200)
    x2, y2, z2, _ = generate_split(two, "val", 200)
    assert not z1.any() and np.array_equal(y1, y2)
    keep = z2 == 0
    assert 0 < keep.sum() < 200
    assert np.array_equal(x1[keep], x2[keep]) and not np.array_equal(x1[~keep], x2[~keep])


def test_context_is_visible_in_the_noise_colour():
    """The context cue is global and class-independent: the colour correlation of fine detail
    (pixel minus its 4-neighbour mean, which removes most of the band-limited textures) tells
    the contexts apart far above chance, while the classes' channel means stay equal."""
    spec = SyntheticSpec(classes=10, contexts=2)
    x, _, z, _ = generate_split(spec, "val", 400)
    f = x.astype(np.float64) - 128
    hp = f[..., 1:-1, 1:-1] - 0.25 * (f[..., :-2, 1:-1] + f[..., 2:, 1:-1] + f[..., 1:-1, :-2] + f[..., 1:-1, 2:])
    hp = hp.reshape(len(x), 3, -1)
    cov = np.einsum("nip,njp->nij", hp, hp)
    d = np.sqrt(np.einsum("nii->ni", cov))
    r = cov / (d[:, :, None] * d[:, None, :])  # (n, 3, 3) per-image fine-detail correlation
    feat = r[:, [0, 0, 1], [1, 2, 2]]
    mid = 0.5 * (feat[z == 0].mean(0) + feat[z == 1].mean(0))
    w = feat[z == 1].mean(0) - feat[z == 0].mean(0)
    acc = (((feat - mid) @ w > 0) == (z == 1)).mean()
    assert acc > 0.9


def test_modes_are_shared_factorised_and_sets_distinct():
    spec = SyntheticSpec(classes=60)
    bank = make_bank(spec)
    for table in bank.class_modes:  # within each context the classes' sets are distinct
        assert len({tuple(s) for s in table.tolist()}) == 60
    per_mode = np.bincount(bank.class_modes[0].ravel(), minlength=spec.modes)
    assert per_mode.min() >= 2  # every mode belongs to several classes
    corr = bank.colour_corr
    np.testing.assert_allclose(np.einsum("mii->mi", corr), 1.0, atol=1e-5)  # unit variances
    # modes sharing a colour share the colour matrix; modes sharing a texture share the spectrum
    np.testing.assert_allclose(corr[0], corr[spec.colours], atol=1e-6)
    np.testing.assert_allclose(bank.amplitude[0], bank.amplitude[1])
    assert not np.allclose(bank.amplitude[0], bank.amplitude[spec.colours])


def test_first_order_useless_second_order_informative():
    """Per-image channel means classify at chance; per-image colour covariance does better
    (one context, the default, so that one centroid per class is a fair classifier)."""
    spec = SyntheticSpec(classes=10, difficulty=0.3)
    bank = make_bank(spec)
    xtr, ytr, _, _ = generate_split(spec, "train", 2000, bank)
    xva, yva, _, _ = generate_split(spec, "val", 1000, bank)

    def centroid_acc(f_tr, f_va):
        mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-9
        f_tr, f_va = (f_tr - mu) / sd, (f_va - mu) / sd
        cent = np.stack([f_tr[ytr == c].mean(0) for c in range(10)])
        pred = ((f_va[:, None] - cent[None]) ** 2).sum(-1).argmin(1)
        return (pred == yva).mean()

    def first(x):
        return x.astype(np.float64).mean(axis=(2, 3))

    def second(x):
        f = x.astype(np.float64).reshape(len(x), 3, -1) - 128
        cov = np.einsum("nip,njp->nij", f, f) / f.shape[2]
        iu = np.triu_indices(3)
        return cov[:, iu[0], iu[1]]

    acc1, acc2 = centroid_acc(first(xtr), first(xva)), centroid_acc(second(xtr), second(xva))
    assert acc1 < 0.2  # chance is 0.1
    assert acc2 > acc1 + 0.05


def test_difficulty_zero_is_pure_texture_and_noise_lowers_structure():
    clean = get_dataset("synthetic", classes=4, n_train=64, n_val=8, difficulty=0.0, seed=3)
    noisy = get_dataset("synthetic", classes=4, n_train=64, n_val=8, difficulty=0.9, seed=3)

    def neighbour_corr(x):
        x = x.float() - 128
        return float((x[..., :, 1:] * x[..., :, :-1]).mean() / (x * x).mean())

    # white noise has no correlation between neighbours; textures (with low frequencies) have some
    assert abs(neighbour_corr(noisy.train.images)) < abs(neighbour_corr(clean.train.images))


def test_size_knob():
    ds = get_dataset("synthetic", classes=3, n_train=30, n_val=6, size=16)
    assert ds.train.images.shape == (30, 3, 16, 16)


@pytest.mark.parametrize(
    "opts, match",
    [
        (dict(classes=600), r"C\(16, 3\) = 560"),
        (dict(regions=2), "option regions"),
        (dict(modes_per_class=17), "option modes_per_class"),
        (dict(difficulty=1.0), "option difficulty"),
        (dict(n_train=5, classes=10), "option n_train"),
        (dict(textures=0), "option textures"),
        (dict(contexts=0), "option contexts"),
        (dict(augment="mirror"), "augment preset 'mirror'"),
    ],
)
def test_bad_knobs(opts, match):
    with pytest.raises(ValueError, match=match):
        get_dataset("synthetic", **{"n_val": 4, **opts})
