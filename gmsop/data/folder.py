"""``folder``: your own images in an ImageFolder tree, decoded once into the memmap cache.

Layout ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>``: classes are the sorted
sub-folders of ``train`` (each with an image); ``val`` may only use those. Images
(``IMAGE_EXTENSIONS``) become RGB ``size`` x ``size`` (``fit="crop"``: shorter side, centre crop;
``"stretch"``). The cache (outside ``root``) is keyed by every image's name, size and mtime.
Presets: ``flip`` (default), ``none``, ``pad_crop`` (flip, pad size // 8, crop back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmsop.data import cache, registry
from gmsop.data._checks import require_choice, require_int, require_root
from gmsop.data.base import AugmentSpec, Dataset
from gmsop.data.imagefiles import FITS, IMAGE_EXTENSIONS, cached_image_dataset, default_workers

WHAT = "train/<class>/*.jpg and val/<class>/*.jpg"


def scan_tree(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]]]:
    """Class names and, per split, (image paths, 0-based labels) of an ImageFolder tree."""
    root = Path(root)
    split_dirs = {"train": root / "train", "val": root / "val"}
    for d in split_dirs.values():
        if not d.is_dir():
            raise ValueError(
                f"folder: missing {d}; expected {root}/train/<class>/... and {root}/val/<class>/..."
            )
    train_dir = split_dirs["train"]
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(f"folder: {train_dir} has {len(classes)} class folder(s); need at least 2")
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, tuple[list[Path], np.ndarray]] = {}
    for split, d in split_dirs.items():
        paths, labels = [], []
        for cdir in sorted(p for p in d.iterdir() if p.is_dir()):
            if cdir.name not in index:
                raise ValueError(f"folder: {cdir} is a class absent from {train_dir}")
            files = sorted(p for p in cdir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if split == "train" and not files:
                raise ValueError(f"folder: class folder {cdir} has no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += files
            labels += [index[cdir.name]] * len(files)
        if not paths:
            raise ValueError(f"folder: {d} holds no images")
        out[split] = (paths, np.asarray(labels, dtype=np.int64))
    return classes, out


@registry.register_source_files("folder")
def _folder_files(root: Path | None, **_) -> list[Path]:
    _, splits = scan_tree(require_root("folder", root, WHAT))
    return splits["train"][0] + splits["val"][0]


@registry.register_augment_presets("folder")
def _augment_presets(size: int, **options) -> dict[str, AugmentSpec]:
    return {
        "flip": AugmentSpec(flip=True),
        "none": AugmentSpec(),
        "pad_crop": AugmentSpec(flip=True, pad=max(1, int(size) // 8)),
    }


@registry.register_dataset("folder")
def folder(
    root: Path | None,
    size: int = 64,
    fit: str = "crop",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    augment: str | AugmentSpec | dict | None = "flip",
) -> Dataset:
    """Images under ``root``/train/<class>/ and ``root``/val/<class>/ at ``size`` x ``size``."""
    name = "folder"
    root = require_root(name, root, WHAT)
    size = require_int(name, "size", size, 1)
    fit = require_choice(name, "fit", fit, FITS)
    workers = default_workers() if workers is None else require_int(name, "workers", workers, 1)
    aug = registry.augment_spec(name, {"size": size, "augment": augment})
    classes, splits = scan_tree(root)
    all_files = splits["train"][0] + splits["val"][0]
    cdir = cache.dataset_cache_dir(root, cache_dir, f"folder-{size}-{fit}")
    fp = cache.fingerprint(all_files, {"size": size, "fit": fit, "classes": classes}, base=root)
    return cached_image_dataset(
        name, root, classes, lambda: splits, cdir, fp, size, fit, workers, aug, info={"fit": fit}
    )
