"""``places365``: Places365-Standard, resized to 100x100 as in the paper, from the release layout.

``<root>`` holds ``categories_places365.txt`` ("/a/airfield 0"), ``places365_train_standard.txt``
("/a/airfield/00000001.jpg 0"), ``places365_val.txt`` and the image folders (``data_256_standard/``,
``data_256/`` or ``data_large_standard/``; ``val_256/`` or ``val_large/``), as torchvision has them.
Images are decoded once into the memmap cache, keyed by the list files. Fewer than 1,803,460 / 36,500
images is a subset, noted (``require_full`` refuses it). Preset ``paper`` (default): random ``crop``
(96) + flip at training, centre crop at evaluation; ``none``: whole images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmsop.data import cache, registry
from gmsop.data._checks import require_int, require_root
from gmsop.data.base import AugmentSpec, Dataset
from gmsop.data.imagefiles import cached_image_dataset, default_workers

FULL_TRAIN, FULL_VAL = 1_803_460, 36_500
CATEGORIES = "categories_places365.txt"
TRAIN_LIST = "places365_train_standard.txt"
VAL_LIST = "places365_val.txt"
TRAIN_DIRS = ("data_256_standard", "data_256", "data_large_standard")
VAL_DIRS = ("val_256", "val_large")
WHAT = f"{CATEGORIES}, {TRAIN_LIST}, {VAL_LIST} and the image folders"


def _read_pairs(path: Path) -> list[tuple[str, int]]:
    """Lines "<name> <int>" of a list file, with the line number in any error."""
    if not path.is_file():
        raise ValueError(f"places365: missing list file {path}")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<name> <class index>', got {line!r}")
            pairs.append((parts[0], int(parts[1])))
    if not pairs:
        raise ValueError(f"{path}: the list is empty")
    return pairs


def read_categories(root: Path) -> list[str]:
    """Class names ordered by index, from ``categories_places365.txt`` (indices 0..K-1, each once)."""
    path = Path(root) / CATEGORIES
    pairs = _read_pairs(path)
    idx = sorted(i for _, i in pairs)
    if idx != list(range(len(pairs))):
        raise ValueError(f"{path}: class indices must be 0..{len(pairs) - 1}, each once")
    return [name for name, _ in sorted(pairs, key=lambda p: p[1])]


def read_list(root: Path, split: str, num_classes: int) -> tuple[list[Path], np.ndarray]:
    """Image paths and 0-based labels of ``split`` ("train" or "val") from its list file."""
    root = Path(root)
    list_path = root / (TRAIN_LIST if split == "train" else VAL_LIST)
    pairs = _read_pairs(list_path)
    dirs = TRAIN_DIRS if split == "train" else VAL_DIRS
    image_dir = next((root / d for d in dirs if (root / d).is_dir()), None)
    if image_dir is None:
        raise ValueError(
            f"places365: no {split} image folder under {root}; expected one of {', '.join(dirs)}"
        )
    labels = np.fromiter((lab for _, lab in pairs), dtype=np.int64, count=len(pairs))
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{list_path}:{i + 1}: class index {int(labels[i])} is outside 0..{num_classes - 1} "
            f"({CATEGORIES} lists {num_classes} classes)"
        )
    paths = [image_dir / name.lstrip("/") for name, _ in pairs]
    return paths, labels


@registry.register_source_files("places365")
def _list_files(root: Path | None, **_) -> list[Path]:
    """The categories and the two list files: they stand for the images (cache and identity)."""
    root = require_root("places365", root, WHAT)
    files = [root / CATEGORIES, root / TRAIN_LIST, root / VAL_LIST]
    for path in files:
        if not path.is_file():
            raise ValueError(f"places365: missing list file {path}")
    return files


@registry.register_augment_presets("places365")
def _augment_presets(crop: int, **options) -> dict[str, AugmentSpec]:
    return {"paper": AugmentSpec(flip=True, train_crop=int(crop), eval_crop=int(crop)), "none": AugmentSpec()}


@registry.register_dataset("places365")
def places365(
    root: Path | None,
    size: int = 100,
    crop: int = 96,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    augment: str | AugmentSpec | dict | None = "paper",
    require_full: bool = False,
) -> Dataset:
    """Places365-Standard at ``size`` x ``size`` (100 in the paper) with ``crop`` training crops."""
    name = "places365"
    root = require_root(name, root, WHAT)
    size = require_int(name, "size", size, 1)
    crop = require_int(name, "crop", crop, 1, size)
    workers = default_workers() if workers is None else require_int(name, "workers", workers, 1)
    aug = registry.augment_spec(name, {"size": size, "crop": crop, "augment": augment})
    classes, fit = read_categories(root), "stretch"
    # the list files stand for the images: stat-ing 1.8M files on every load would be slow
    fp = cache.fingerprint(_list_files(root), {"size": size, "fit": fit}, base=root)
    cdir = cache.dataset_cache_dir(root, cache_dir, f"places365-{size}")

    def lists():
        return {s: read_list(root, s, len(classes)) for s in ("train", "val")}

    full = {"train": FULL_TRAIN, "val": FULL_VAL}
    ds = cached_image_dataset(name, root, classes, lists, cdir, fp, size, fit, workers, aug, full_sizes=full)
    subset_notes = [n for n in ds.info["notes"] if n.startswith("subset")]
    if subset_notes and require_full:
        raise ValueError(f"{name}: require_full=True but {root} holds a subset: {'; '.join(subset_notes)}")
    return ds
