"""``synthetic``: the embedded default, generated from a seed, hard in the way ImageNet is.

Design (principled, not tuned to any model ordering; see embedded-data-notes.md):

* **Modes are textures that differ only in second-order statistics.** A mode is a stationary
  Gaussian colour texture: white noise filtered per channel by sqrt(P) (circular FFT), then
  mixed across channels by chol(C). P is a spatial power spectrum, two Gaussian bumps at +-w
  (orientation stratified over [0, pi), radial frequency in [0.05, 0.35] cycles/pixel,
  bandwidth in [0.03, 0.08]) normalised to mean 1; C is a random 3x3 colour correlation matrix
  (unit diagonal). Every mode has mean 0 and variance 1 in every channel, so all modes, hence
  all classes, share per-channel means and variances.
* **Modes are factorised: texture x colour.** There are ``textures`` spectra and ``colours``
  correlation matrices, and the ``textures * colours`` modes are all their pairings. Every
  spectrum and every colour structure is shared by many modes, so what tells modes apart is
  which colour covariance goes with which spatial band: a cross-channel covariance within a
  frequency band, i.e. a joint colour-texture second-order statistic, not a marginal one.
* **Classes are combinations of shared modes (multimodal).** Class c owns a distinct set S_c of
  ``modes_per_class`` modes; every mode belongs to many classes, so no single local texture
  names the class: only the co-occurrence of the set does.
* **Image-level sub-modes: contexts change what the evidence means.** Every image is taken in
  one of ``contexts`` contexts, shared by all classes and balanced within each class. A context
  has its own class -> mode-set table (drawn independently, distinct sets within a context), so
  class c shows the mode set S_{c,z} in context z: the SAME textures stand for different classes
  in different contexts, and a class is a mixture of ``contexts`` unrelated looks. The context
  is recognisable from a global, class-independent cue: the colour correlation of the pixel
  noise (context 0: white; context z >= 1: a random correlation matrix with unit diagonal, so
  variances stay 1). Evidence that is additive over the image (a covariance, an average) then
  needs a multiplicative interaction with the context to be read: one fixed head has to carve
  ``contexts`` conflicting templates per class, while a gate that recognises the context can
  route each context's images to components of their own. This is the situation the paper's
  gated mixture is meant for (a multimodal distribution, one component per mode); with
  ``contexts = N / K = 2`` Top-8 of GM-SOP-16-8 can pick a disjoint half of its 16 components
  per context. The default is ``contexts = 1`` (no context, white noise: the mosaic design
  alone). Measured (reports/findings.md, `contexts`): at 2 contexts and the 3-epoch
  CPU recipe every head stays above 90% error and the trained gates' Top-8 sets do not tell
  the contexts apart, so the knob is offered for longer schedules, not used by the defaults.
* **Images are mosaics of regions.** An image is a Voronoi partition of the canvas into
  ``regions`` cells around uniform random seed points; cells take the modes of S_c (each mode at
  least once, so an image shows its whole set; extra cells pick from S_c at random). A global
  statistic averages the modes with random area weights and blurs them together. (For speed, an
  image's textures filter one shared white-noise canvas; each pixel keeps one of them, so within
  a cell the statistics are exactly its mode's.)
* **Noise.** Each pixel is sqrt(1 - difficulty) * texture + sqrt(difficulty) * noise, the noise
  unit-variance and coloured by the image's context (variance stays 1), then quantised as
  round(128 + 42.5 x) clipped to [0, 255] (about 0.3% of values clip, symmetrically, so means
  stay equal).
* **Many classes, few images.** Defaults: 100 classes, 4 textures x 4 colours = 16 modes, 3
  modes per class, 1 context, 4 regions, 10,000 train / 2,000 val images (100 per class,
  balanced), 3x32x32.

Knobs (all options of ``get_dataset("synthetic", ...)``): ``classes``, ``textures``,
``colours``, ``modes_per_class``, ``contexts``, ``regions`` (>= modes_per_class), ``size``
(image side), ``n_train``, ``n_val``, ``difficulty`` (noise variance fraction in [0, 1)),
``seed``, ``augment``.

Determinism: modes and context 0's class sets come from the stream (seed, 0), context z's class
sets and noise colour from (seed, 0, z); train images from (seed, 1, chunk), val images from
(seed, 2, chunk), in fixed chunks of 1024, so the same seed gives identical bytes, and the
validation images do not change when ``n_train`` does.
Augmentation defaults to none: a horizontal mirror turns an oriented texture at angle theta
into one at pi - theta, which may be another mode, so flipping would alter class evidence.

Cache: generation costs about 0.4 ms per image on one core (seconds for a dataset), and the
workflow builds the same dataset in every training and benchmark job after its ``prepare_data``
rule has already built it once. So when ``$GMSOP_CACHE_DIR`` is set (the workflow sets it to
its ``cache_dir``), the first call writes the dataset into the uint8 memory-map layout of
``gmsop.data.cache`` (every file atomic, ``meta.json`` last; two writers produce the same bytes)
under ``<cache dir>/generated/synthetic-v<version>-<hash>``, and later calls map it
copy-on-write instead of generating it. The hash (``cache_identity``) covers every option that
decides the bytes, validated and with defaults filled in (all but ``augment``, so a job's augment
override reuses the cache), and the builder's ``data_version``: other options never share a
folder and a version bump regenerates. The result is the same Dataset either way (same bytes,
labels, mean/std, sources; ``info`` adds "cache"). Without the variable, data is generated in
memory and nothing is written: tests and library users get no files in ~/.cache for data that
needs none.
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
from gmsop.data.registry import (
    augment_spec,
    dataset_options,
    register_augment_presets,
    register_dataset,
    register_train_size,
)
from gmsop.data.stats import channel_mean_std

__all__ = [
    "SyntheticSpec",
    "TextureBank",
    "make_bank",
    "generate_split",
    "synthetic",
    "cache_identity",
    "cache_dir_for",
]

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

    @property
    def modes(self) -> int:
        """Number of modes: every texture paired with every colour structure."""
        return self.textures * self.colours


@dataclass(frozen=True)
class TextureBank:
    """The modes and the class -> mode-set table of one spec.

    Mode m pairs texture ``m // colours`` with colour structure ``m % colours``.

    Attributes:
        colour_chol: (modes, 3, 3) lower Cholesky factors of the modes' colour correlations.
        amplitude: (modes, size, size // 2 + 1) sqrt of the modes' power spectra (rfft2 grid).
        class_modes: (contexts, classes, modes_per_class) the mode set S_{c,z} of each class in
            each context, sorted.
        noise_chol: (contexts, 3, 3) lower Cholesky factors of each context's noise colour
            correlation (identity for context 0).
        orientation, frequency, bandwidth: (textures,) the spectral parameters, for reports.
    """

    colour_chol: np.ndarray
    amplitude: np.ndarray
    class_modes: np.ndarray
    noise_chol: np.ndarray
    orientation: np.ndarray
    frequency: np.ndarray
    bandwidth: np.ndarray

    @property
    def colour_corr(self) -> np.ndarray:
        """(modes, 3, 3) colour correlation matrices C = L L^T."""
        return self.colour_chol @ np.swapaxes(self.colour_chol, 1, 2)


def _class_sets(rng: np.random.Generator, classes: int, modes: int, k: int) -> np.ndarray:
    """``classes`` distinct k-subsets of range(modes), drawn without replacement."""
    total = math.comb(modes, k)
    if classes > total:
        raise ValueError(
            f"synthetic: {classes} classes need distinct mode sets, but only C({modes}, {k}) = {total} exist; "
            f"raise textures, colours or modes_per_class"
        )
    seen: set[tuple[int, ...]] = set()
    out = []
    while len(out) < classes:
        s = tuple(sorted(rng.choice(modes, size=k, replace=False).tolist()))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return np.asarray(out, dtype=np.int64)


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
        theta,
        freq,
        band,
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
    """Generate ``n`` images of ``split`` ("train" or "val").

    Returns:
        images (n, 3, S, S) uint8, labels (n,) int64, the latent context of each image (n,) int64
        and the latent mode map (n, S, S) int64 (which mode each pixel was drawn from); the last
        two are for tests and analysis.
    """
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


# version: bump when the same options start to generate other bytes (new run ids follow).
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
    """Generated multimodal texture-mosaic data (see the module docstring). ``root`` is ignored;
    with ``$GMSOP_CACHE_DIR`` set the data is generated once into a cache there and mapped after."""
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
        data = _generate(spec, n_train, n_val)
        cdir = None
    else:
        cdir, data = _cached(root_dir, spec, n_train, n_val)
    train, val, mean, std, class_modes = data
    source = f"generated:synthetic(seed={spec.seed})"
    info = {"source": "generated", "spec": dataclasses.asdict(spec), "class_modes": class_modes}
    if cdir is not None:
        info["cache"] = str(cdir)
    return Dataset(
        name=name,
        num_classes=spec.classes,
        # the same sources with or without a cache: summary() does not depend on it
        train=Split(torch.from_numpy(train[0]), torch.from_numpy(train[1]), source=source + "/train"),
        val=Split(torch.from_numpy(val[0]), torch.from_numpy(val[1]), source=source + "/val"),
        mean=mean,
        std=std,
        augment=aug,
        info=info,
    )


#: options that do not change a single byte of the images or labels, hence not in the cache key
#: (a training job's augment override must find the cache that prepare_data built)
_NOT_IN_BYTES = frozenset({"augment"})


def cache_identity(spec: SyntheticSpec, n_train: int, n_val: int) -> dict:
    """What decides the bytes of a generated dataset: every option of the builder (validated, so
    ``10`` and ``10.0`` agree; defaults filled in) except ``augment``, plus its ``data_version``.

    Raises RuntimeError when the builder has an option this does not know, so that an option
    added later cannot silently share caches across its values.
    """
    options = {**dataclasses.asdict(spec), "n_train": int(n_train), "n_val": int(n_val)}
    expected = set(dataset_options("synthetic")) - _NOT_IN_BYTES
    if set(options) != expected:
        raise RuntimeError(
            f"synthetic: the cache key covers {sorted(options)} but the builder's byte-deciding options are "
            f"{sorted(expected)}; update cache_identity"
        )
    return {"dataset": "synthetic", "version": synthetic.data_version, "options": options}


def cache_dir_for(root: Path, identity: dict) -> Path:
    """``root/generated/synthetic-v<version>-<16 hex of the identity hash>``."""
    return Path(root) / "generated" / f"synthetic-v{identity['version']}-{cache.identity_hash(identity)[:16]}"


def _generate(spec: SyntheticSpec, n_train: int, n_val: int):
    """((train images, labels), (val images, labels), mean, std, class_modes as lists)."""
    bank = make_bank(spec)
    tr_x, tr_y, _, _ = generate_split(spec, "train", n_train, bank)
    va_x, va_y, _, _ = generate_split(spec, "val", n_val, bank)
    mean, std = channel_mean_std(tr_x)
    return (tr_x, tr_y), (va_x, va_y), mean, std, bank.class_modes.tolist()


def _cached(root: Path, spec: SyntheticSpec, n_train: int, n_val: int):
    """``_generate``'s result through the cache under ``root``: generated and written the first
    time (meta.json last, every file atomically), memory-mapped copy-on-write afterwards."""
    identity = cache_identity(spec, n_train, n_val)
    fp = cache.identity_hash(identity)
    cdir = cache_dir_for(root, identity)
    meta = cache.read_meta(cdir, fp)
    if meta is None:
        cache.prepare_cache_dir(cdir)
        cache.invalidate(cdir)  # a corrupt or foreign meta.json must not survive the rewrite
        (tr_x, tr_y), (va_x, va_y), mean, std, class_modes = _generate(spec, n_train, n_val)
        for split, x, y in (("train", tr_x, tr_y), ("val", va_x, va_y)):
            cache.atomic_save_npy(cache.images_path(cdir, split), x)
            cache.atomic_save_npy(cache.labels_path(cdir, split), y)
        meta = cache.write_meta(
            cdir,
            fp,
            {
                "dataset": "synthetic",
                "identity": identity,
                "splits": {"train": {"shape": list(tr_x.shape)}, "val": {"shape": list(va_x.shape)}},
                "num_classes": spec.classes,
                "mean": list(mean),
                "std": list(std),
                "class_modes": class_modes,
            },
        )
    train, val = cache.load_split(cdir, "train", meta), cache.load_split(cdir, "val", meta)
    data = (
        (train.images.numpy(), train.labels.numpy()),
        (val.images.numpy(), val.labels.numpy()),
        tuple(meta["mean"]),
        tuple(meta["std"]),
        meta["class_modes"],
    )
    return cdir, data


@register_train_size("synthetic")
def _synthetic_train_size(root, n_train: int = 10_000, **_) -> int:
    return int(n_train)
