"""The generated default dataset: determinism, the design's stated properties, knob validation,
and its cache under $GMSOP_CACHE_DIR (built once, mapped after, nothing written without it)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import gmsop.data.synthetic as synthetic_module
from gmsop.data import cache as cache_module
from gmsop.data import dataset_options, get_dataset
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
    hp = f[..., 1:-1, 1:-1] - 0.25 * (
        f[..., :-2, 1:-1] + f[..., 2:, 1:-1] + f[..., 1:-1, :-2] + f[..., 1:-1, 2:]
    )
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
    per_mode = np.bincount(bank.class_modes[0].ravel(), minlength=spec.textures * spec.colours)
    assert per_mode.min() >= 2  # every mode belongs to several classes
    corr = bank.colour_chol @ np.swapaxes(bank.colour_chol, 1, 2)  # C = L L^T per mode
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


# --- the cache under $GMSOP_CACHE_DIR -------------------------------------------------------

TINY = dict(classes=4, n_train=40, n_val=12, size=16)


@pytest.fixture
def count_generation(monkeypatch):
    """Count calls of generate_split made by the builder (each call renders images)."""
    calls = []
    real = synthetic_module.generate_split

    def counting(spec, split, n, bank=None):
        calls.append(split)
        return real(spec, split, n, bank)

    monkeypatch.setattr(synthetic_module, "generate_split", counting)
    return calls


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _assert_same_dataset(a, b):
    for split in ("train", "val"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert sa.images.dtype == sb.images.dtype and torch.equal(sa.images, sb.images)
        assert sa.labels.dtype == sb.labels.dtype and torch.equal(sa.labels, sb.labels)
    assert a.num_classes == b.num_classes and a.mean == b.mean and a.std == b.std
    assert a.augment == b.augment and a.classes == b.classes
    sa, sb = a.summary(), b.summary()
    sa["info"] = {k: v for k, v in sa["info"].items() if k != "cache"}
    sb["info"] = {k: v for k, v in sb["info"].items() if k != "cache"}
    assert sa == sb


def test_cached_load_equals_generation_bit_for_bit(monkeypatch, tmp_path):
    fresh = get_dataset("synthetic", contexts=2, **SMALL)  # no cache: in memory
    assert "cache" not in fresh.info
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))
    first = get_dataset("synthetic", contexts=2, **SMALL)  # generates and writes the cache
    second = get_dataset("synthetic", contexts=2, **SMALL)  # maps it
    cdir = Path(second.info["cache"])
    assert cdir.parent == tmp_path / "generated" and first.info["cache"] == str(cdir)
    names = ["meta.json", "train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"]
    assert sorted(_files(cdir)) == names
    _assert_same_dataset(fresh, first)
    _assert_same_dataset(fresh, second)
    second.train.images[0].zero_()  # copy-on-write: the file keeps its bytes
    assert torch.equal(get_dataset("synthetic", contexts=2, **SMALL).train.images, fresh.train.images)


def test_second_call_reads_the_cache_without_generating(monkeypatch, tmp_path, count_generation):
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))
    first = get_dataset("synthetic", **TINY)
    assert count_generation == ["train", "val"]
    cdir = Path(first.info["cache"])
    before = _files(cdir)
    again = get_dataset("synthetic", **TINY)
    again_flip = get_dataset("synthetic", augment="flip", **TINY)  # augment does not change bytes
    assert count_generation == ["train", "val"]  # nothing rendered again
    assert _files(cdir) == before  # nothing rewritten
    assert again.info["cache"] == again_flip.info["cache"] == str(cdir)
    assert again_flip.augment.flip and not again.augment.flip
    _assert_same_dataset(first, again)


def test_other_options_or_version_use_another_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))
    base = get_dataset("synthetic", **TINY).info["cache"]
    assert get_dataset("synthetic", **{**TINY, "classes": 4.0}).info["cache"] == base  # validated values
    spec = SyntheticSpec(**{k: v for k, v in TINY.items() if k in ("classes", "size")})
    identity = synthetic_module.cache_identity(spec, TINY["n_train"], TINY["n_val"])
    # every option but augment is in the key, defaults filled in
    assert set(identity["options"]) == set(dataset_options("synthetic")) - {"augment"}
    assert (
        identity["options"]["difficulty"] == 0.5
        and identity["version"] == synthetic_module.synthetic.data_version
    )
    others = {
        get_dataset("synthetic", **{**TINY, **change}).info["cache"]
        for change in (
            dict(seed=1),
            dict(n_train=44),
            dict(n_val=13),
            dict(difficulty=0.4),
            dict(size=12),
            dict(classes=5),
            dict(regions=5),
            dict(contexts=2),
        )
    }
    assert len(others) == 8 and base not in others
    monkeypatch.setattr(
        synthetic_module.synthetic, "data_version", synthetic_module.synthetic.data_version + 1
    )
    bumped = get_dataset("synthetic", **TINY).info["cache"]
    assert bumped != base and bumped not in others


@pytest.mark.parametrize("damage", ["missing", "garbage", "other_fingerprint", "old_format"])
def test_bad_or_missing_meta_is_rebuilt(monkeypatch, tmp_path, count_generation, damage):
    fresh = get_dataset("synthetic", **TINY)  # in memory
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))
    cdir = Path(get_dataset("synthetic", **TINY).info["cache"])
    meta_path = cdir / "meta.json"
    meta = json.loads(meta_path.read_text())
    # stale arrays of other bytes under the same name (a new file: the maps above keep theirs):
    # only a rebuild gives the right data
    cache_module.atomic_save_npy(cdir / "train_images.npy", np.zeros_like(fresh.train.images.numpy()))
    if damage == "missing":
        meta_path.unlink()
    elif damage == "garbage":
        meta_path.write_text("{not json")
    elif damage == "other_fingerprint":
        meta_path.write_text(json.dumps({**meta, "fingerprint": "0" * 64}))
    else:
        meta_path.write_text(json.dumps({**meta, "format": meta["format"] + 1}))
    rebuilt = get_dataset("synthetic", **TINY)
    assert count_generation == ["train", "val"] * 3
    assert json.loads(meta_path.read_text()) == meta
    _assert_same_dataset(fresh, rebuilt)
    assert rebuilt.train.images.any()


def test_an_interrupted_write_leaves_no_valid_cache(monkeypatch, tmp_path, count_generation):
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cache_module, "write_meta", killed)  # dies after the arrays, before the commit
        with pytest.raises(KeyboardInterrupt):
            get_dataset("synthetic", **TINY)
    (cdir,) = (tmp_path / "generated").iterdir()
    assert not (cdir / "meta.json").exists()
    assert not [p for p in cdir.iterdir() if p.name.endswith(".tmp")]  # no temporary files left
    ds = get_dataset("synthetic", **TINY)  # redone from scratch
    assert count_generation == ["train", "val"] * 2 and (cdir / "meta.json").is_file()
    monkeypatch.delenv("GMSOP_CACHE_DIR")
    _assert_same_dataset(get_dataset("synthetic", **TINY), ds)


def test_concurrent_writers_agree(monkeypatch, tmp_path):
    """Builders racing on an empty cache each write temporary files and rename them: every one
    gets the right data and the cache ends complete and valid."""
    monkeypatch.setenv("GMSOP_CACHE_DIR", str(tmp_path))
    results, errors = [], []

    def build():
        try:
            results.append(get_dataset("synthetic", **TINY))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    final = get_dataset("synthetic", **TINY)
    monkeypatch.delenv("GMSOP_CACHE_DIR")
    fresh = get_dataset("synthetic", **TINY)
    for ds in (*results, final):
        _assert_same_dataset(fresh, ds)
    (cdir,) = (tmp_path / "generated").iterdir()
    assert not [p for p in cdir.iterdir() if p.name.endswith(".tmp")]


def test_without_the_variable_nothing_is_written(monkeypatch, tmp_path):
    monkeypatch.delenv("GMSOP_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    ds = get_dataset("synthetic", **TINY)
    assert "cache" not in ds.info
    assert list(tmp_path.iterdir()) == []
