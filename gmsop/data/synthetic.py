"""``synthetic``: the embedded default, generated from a seed, hard in the way ImageNet is.

* **Modes**: stationary Gaussian colour textures differing only in second-order statistics: white
  noise filtered by sqrt(P) (P: two Gaussian bumps at +-w, mean 1) and mixed across channels by
  chol(C) (C a random colour correlation); ``textures * colours`` modes pair every P with every C.
* **Classes** own distinct sets of ``modes_per_class`` shared modes: only co-occurrence names the
  class. With ``contexts`` > 1 each image has a context (balanced per class) with its own class ->
  mode-set table, told only by the colour correlation of the pixel noise (context 0: white).
* **Images**: Voronoi mosaics of ``regions`` cells, each one of the class's modes (each at least
  once): sqrt(1 - difficulty) texture + sqrt(difficulty) noise, round(128 + 42.5 x) clipped to 0..255.

Streams: bank (seed, 0) (context z: (seed, 0, z)), train (seed, 1, chunk), val (seed, 2, chunk),
chunks of 1024. No flip by default (a mirrored texture at theta is one at pi - theta). With
``$GMSOP_CACHE_DIR`` set, data is generated once into ``generated/synthetic-v<version>-<hash>`` there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft as sfft
import torch

from gmsop.data import cache
from gmsop.data._checks import require_float, require_int
from gmsop.data.base import AugmentSpec, Dataset, Split
from gmsop.data.registry import augment_spec, register_augment_presets, register_dataset, register_train_size
from gmsop.data.stats import channel_mean_std

_CHUNK = 1024  # images per random stream; fixed so that results do not depend on n
_SCALE = 42.5  # grey levels per unit of texture amplitude: +-3 sigma spans 0..255
_STREAM_BANK, _STREAM_TRAIN, _STREAM_VAL = 0, 1, 2


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the generated data."""

    classes: int = 100
    textures: int = 4
    colours: int = 4
    modes_per_class: int = 3
    contexts: int = 1
    regions: int = 4
    size: int = 32
    difficulty: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class TextureBank:
    """The modes of one spec (mode m pairs texture ``m // colours`` with colour ``m % colours``) and
    the class -> mode-set tables, per context."""

    colour_chol: np.ndarray  # (modes, 3, 3) Cholesky factors of the modes' colour correlations
    amplitude: np.ndarray  # (modes, size, size // 2 + 1) sqrt of the power spectra (rfft2 grid)
    class_modes: np.ndarray  # (contexts, classes, modes_per_class) sorted mode sets
    noise_chol: np.ndarray  # (contexts, 3, 3) Cholesky factors of the noise colour (identity for 0)


def _class_sets(rng: np.random.Generator, classes: int, modes: int, k: int) -> np.ndarray:
    """``classes`` distinct k-subsets of range(modes), drawn without replacement."""
    total = math.comb(modes, k)
    if classes > total:
        raise ValueError(
            f"synthetic: {classes} classes need distinct mode sets, but only C({modes}, {k}) = {total} "
            "exist; raise textures, colours or modes_per_class"
        )
    sets: dict[tuple[int, ...], None] = {}  # an ordered set: first draws first
    while len(sets) < classes:
        sets[tuple(sorted(rng.choice(modes, size=k, replace=False).tolist()))] = None
    return np.asarray(list(sets), dtype=np.int64)


def _random_corr_chol(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) Cholesky factors of random correlation matrices (normalised Wishart draws, PD)."""
    g = rng.standard_normal((n, 3, 3))
    cov = g @ np.swapaxes(g, 1, 2) + 1e-2 * np.eye(3)  # (n, 3, 3)
    d = np.sqrt(np.einsum("cii->ci", cov))  # (n, 3)
    return np.linalg.cholesky(cov / (d[:, :, None] * d[:, None, :]))  # unit-diagonal correlation


def make_bank(spec: SyntheticSpec) -> TextureBank:
    """Draw the textures, colour structures, noise colours and per-context class mode sets."""
    rng = np.random.default_rng([spec.seed, _STREAM_BANK])
    t, c, s = spec.textures, spec.colours, spec.size
    chol = _random_corr_chol(rng, c)  # (c, 3, 3) colour structures
    # space: two Gaussian bumps at +-w on the full FFT grid, mean power 1 (unit variance);
    # orientations stratified so that no two textures share a direction by chance
    theta = (np.arange(t) + rng.uniform(0.0, 1.0, t)) * math.pi / t
    freq = rng.uniform(0.05, 0.35, t)
    band = rng.uniform(0.03, 0.08, t)
    fy = np.fft.fftfreq(s)[:, None]  # (s, 1) cycles per pixel
    fx = np.fft.fftfreq(s)[None, :]  # (1, s)
    wy, wx = (freq * np.sin(theta))[:, None, None], (freq * np.cos(theta))[:, None, None]
    b2 = 2.0 * band[:, None, None] ** 2
    power = np.exp(-((fy - wy) ** 2 + (fx - wx) ** 2) / b2) + np.exp(-((fy + wy) ** 2 + (fx + wx) ** 2) / b2)
    power /= power.mean(axis=(1, 2), keepdims=True)  # (t, s, s), mean 1 -> variance 1
    amplitude = np.sqrt(power[:, :, : s // 2 + 1])  # (t, s, s//2+1), the rfft2 half-plane
    # modes: every (texture, colour) pairing; mode m = texture m // c, colour m % c
    mode_texture, mode_colour = np.divmod(np.arange(t * c), c)
    class_modes = [_class_sets(rng, spec.classes, t * c, spec.modes_per_class)]
    noise_chol = [np.eye(3)]
    for z in range(1, spec.contexts):  # context z: its own class table and noise colour
        rng_z = np.random.default_rng([spec.seed, _STREAM_BANK, z])
        class_modes.append(_class_sets(rng_z, spec.classes, t * c, spec.modes_per_class))
        noise_chol.append(_random_corr_chol(rng_z, 1)[0])
    return TextureBank(
        chol[mode_colour].astype(np.float32),  # (modes, 3, 3)
        amplitude[mode_texture].astype(np.float32),  # (modes, s, s//2+1)
        np.stack(class_modes),  # (contexts, classes, k)
        np.stack(noise_chol).astype(np.float32),  # (contexts, 3, 3)
    )


def _balanced_labels(
    n: int, classes: int, contexts: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n labels, each class n // classes or one more times, in random order, and a context per
    image, balanced within each class (the j-th image of a class gets context j % contexts)."""
    order = rng.permutation(n)  # the same shuffle as rng.permutation(np.arange(n) % classes)
    i = np.arange(n)
    return (i % classes)[order].astype(np.int64), ((i // classes) % contexts)[order].astype(np.int64)


def _render_chunk(
    spec: SyntheticSpec, bank: TextureBank, labels: np.ndarray, context: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, S, S) uint8 and their per-pixel mode map (n, S, S) for ``labels`` in ``context``."""
    n, s, r, k = len(labels), spec.size, spec.regions, spec.modes_per_class
    # slot j of image i shows mode sets[i, j]; regions take every slot once, extras at random
    sets = bank.class_modes[context, labels]  # (n, k)
    region_slot = np.concatenate(
        [np.argsort(rng.random((n, k)), axis=1), rng.integers(0, k, (n, r - k))], axis=1
    )  # (n, r)
    # Voronoi cells around r uniform seed points
    seeds = rng.uniform(0, s, (n, r, 2)).astype(np.float32)  # (n, r, 2) as (y, x)
    grid = np.arange(s, dtype=np.float32) + 0.5
    dist = (grid[None, None, :, None] - seeds[:, :, 0, None, None]) ** 2 + (
        grid[None, None, None, :] - seeds[:, :, 1, None, None]
    ) ** 2  # (n, r, s, s)
    cell = dist.argmin(axis=1)  # (n, s, s) region of each pixel
    slot = np.take_along_axis(region_slot, cell.reshape(n, -1), axis=1).reshape(n, s, s)  # (n, s, s)
    # the k textures of an image filter one white-noise canvas with each of its modes' spectra:
    # every pixel keeps one of them, so within a cell the statistics are exactly its mode's
    noise = rng.standard_normal((n, 3, s, s), dtype=np.float32)
    spectrum = sfft.rfft2(noise, workers=-1)  # (n, 3, s, s//2+1) complex64
    amp = bank.amplitude[sets]  # (n, k, s, s//2+1)
    tex = sfft.irfft2(spectrum[:, None] * amp[:, :, None], s=(s, s), workers=-1)  # (n, k, 3, s, s)
    tex = (bank.colour_chol[sets] @ tex.reshape(n, k, 3, s * s)).reshape(n, k, 3, s, s)  # colour mix
    image = np.take_along_axis(tex, slot[:, None, None], axis=1)[:, 0]  # (n, 3, s, s)
    grain = rng.standard_normal((n, 3, s, s), dtype=np.float32)  # pixel noise, coloured by context
    coloured = context != 0  # context 0's noise is white: no mixing, the same bytes as before contexts
    grain[coloured] = (bank.noise_chol[context[coloured]] @ grain[coloured].reshape(-1, 3, s * s)).reshape(
        -1, 3, s, s
    )
    x = np.float32(math.sqrt(1.0 - spec.difficulty)) * image + np.float32(math.sqrt(spec.difficulty)) * grain
    pixels = np.clip(np.rint(128.0 + _SCALE * x), 0, 255).astype(np.uint8)
    mode_map = np.take_along_axis(sets, slot.reshape(n, -1), axis=1).reshape(n, s, s)
    return pixels, mode_map


def generate_split(
    spec: SyntheticSpec, split: str, n: int, bank: TextureBank | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images (n, 3, S, S) uint8 of ``split`` ("train" or "val"), labels (n,), and for tests and
    analysis the latent context (n,) and mode map (n, S, S) (which mode each pixel was drawn from)."""
    if split not in ("train", "val"):
        raise ValueError(f"synthetic: split must be 'train' or 'val', got {split!r}")
    bank = make_bank(spec) if bank is None else bank
    stream = _STREAM_TRAIN if split == "train" else _STREAM_VAL
    labels, context = _balanced_labels(
        n, spec.classes, spec.contexts, np.random.default_rng([spec.seed, stream, 0])
    )
    images = np.empty((n, 3, spec.size, spec.size), dtype=np.uint8)
    mode_map = np.empty((n, spec.size, spec.size), dtype=np.int64)
    for c, start in enumerate(range(0, n, _CHUNK)):
        rng = np.random.default_rng([spec.seed, stream, 1 + c])
        sl = slice(start, min(start + _CHUNK, n))
        images[sl], mode_map[sl] = _render_chunk(spec, bank, labels[sl], context[sl], rng)
    return images, labels, context, mode_map


@register_augment_presets("synthetic")
def _augment_presets(**options) -> dict[str, AugmentSpec]:
    return {"none": AugmentSpec(), "flip": AugmentSpec(flip=True)}


@register_dataset("synthetic", version=1)
def synthetic(
    root: Path | None = None,
    classes: int = 100,
    textures: int = 4,
    colours: int = 4,
    modes_per_class: int = 3,
    contexts: int = 1,
    regions: int = 4,
    size: int = 32,
    n_train: int = 10_000,
    n_val: int = 2_000,
    difficulty: float = 0.5,
    seed: int = 0,
    augment: str | AugmentSpec | dict | None = "none",
) -> Dataset:
    """Generated multimodal texture-mosaic data (see the module docstring); ``root`` is ignored."""
    name = "synthetic"
    textures = require_int(name, "textures", textures, 1)
    colours = require_int(name, "colours", colours, 1)
    modes_per_class = require_int(name, "modes_per_class", modes_per_class, 1, textures * colours)
    spec = SyntheticSpec(
        classes=require_int(name, "classes", classes, 2),
        textures=textures,
        colours=colours,
        modes_per_class=modes_per_class,
        contexts=require_int(name, "contexts", contexts, 1),
        regions=require_int(name, "regions", regions, modes_per_class),
        size=require_int(name, "size", size, 4),
        difficulty=require_float(name, "difficulty", difficulty, 0.0, 1.0, hi_open=True),
        seed=require_int(name, "seed", seed, 0),
    )
    n_train = require_int(name, "n_train", n_train, spec.classes)
    n_val = require_int(name, "n_val", n_val, 1)
    aug = augment_spec(name, {"augment": augment})
    root_dir = cache.env_cache_root()
    if root_dir is None:  # no cache asked for: generate in memory, write nothing
        cdir, (xy, mean, std, class_modes) = None, _generate(spec, n_train, n_val)
    else:
        cdir, (xy, mean, std, class_modes) = _cached(root_dir, spec, n_train, n_val)
    info = {"source": "generated", "spec": dataclasses.asdict(spec), "class_modes": class_modes}
    info.update({"cache": str(cdir)} if cdir is not None else {})
    # the same sources with or without a cache: summary() does not depend on it
    source = f"generated:synthetic(seed={spec.seed})"
    train, val = (
        Split(torch.from_numpy(x), torch.from_numpy(y), f"{source}/{s}") for s, (x, y) in xy.items()
    )
    return Dataset(
        name=name, num_classes=spec.classes, train=train, val=val, mean=mean, std=std, augment=aug, info=info
    )


def cache_identity(spec: SyntheticSpec, n_train: int, n_val: int) -> dict:
    """What decides the bytes: every validated option of the builder but ``augment`` (which changes
    none), and its ``data_version``."""
    options = {**dataclasses.asdict(spec), "n_train": int(n_train), "n_val": int(n_val)}
    return {"dataset": "synthetic", "version": synthetic.data_version, "options": options}


def _generate(spec: SyntheticSpec, n_train: int, n_val: int):
    """({split: (images, labels)}, mean, std, class_modes as lists)."""
    bank = make_bank(spec)
    xy = {s: generate_split(spec, s, n, bank)[:2] for s, n in (("train", n_train), ("val", n_val))}
    return xy, *channel_mean_std(xy["train"][0]), bank.class_modes.tolist()


def _cached(root: Path, spec: SyntheticSpec, n_train: int, n_val: int):
    """``_generate``'s result through the cache ``root/generated/synthetic-v<version>-<hash>``:
    generated and written the first time, memory-mapped copy-on-write afterwards."""
    identity = cache_identity(spec, n_train, n_val)
    fp = cache.identity_hash(identity)
    cdir = Path(root) / "generated" / f"synthetic-v{identity['version']}-{fp[:16]}"
    meta = cache.read_meta(cdir, fp)
    if meta is None:
        cache.prepare_cache_dir(cdir)
        cache.invalidate(cdir)  # a corrupt or foreign meta.json must not survive the rewrite
        xy, mean, std, class_modes = _generate(spec, n_train, n_val)
        for split, (x, y) in xy.items():
            cache.atomic_save_npy(cache.images_path(cdir, split), x)
            cache.atomic_save_npy(cache.labels_path(cdir, split), y)
        shapes = {split: {"shape": list(x.shape)} for split, (x, _) in xy.items()}
        fields = dict(dataset="synthetic", identity=identity, splits=shapes, num_classes=spec.classes)
        meta = cache.write_meta(cdir, fp, {**fields, "mean": mean, "std": std, "class_modes": class_modes})
    splits = {s: cache.load_split(cdir, s, meta) for s in ("train", "val")}
    xy = {s: (split.images.numpy(), split.labels.numpy()) for s, split in splits.items()}
    return cdir, (xy, tuple(meta["mean"]), tuple(meta["std"]), meta["class_modes"])


@register_train_size("synthetic")
def _synthetic_train_size(root, n_train: int = 10_000, **_) -> int:
    return int(n_train)
