"""``imagenet64``: downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017) from its release files.

``train_data_batch_{1..10}[.npz]`` and ``val_data[.npz]`` are found in ``root`` and its sub-folders
(except one named for another resolution); ``data`` rows are whole R, G, B planes, labels 1-based.
The first load converts them into the memmap cache, one file in memory at a time. Fewer than
1,281,167 / 50,000 images is a subset: noted, warned (``SubsetWarning``) or, with ``require_full``,
refused. Pickles are read by an unpickler that resolves only numpy names. Presets: ``flip``
(default, Table 2), ``star`` (Table 3's star rows: mirror-doubled training set, 4-pixel pad + random
crop at training and prediction), ``none``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np

from gmsop.data import cache, registry
from gmsop.data._checks import require_int, require_root
from gmsop.data.base import AugmentSpec, Dataset
from gmsop.data.npz import load_npz, unreadable
from gmsop.data.stats import ChannelStats

FULL_TRAIN, FULL_VAL = 1_281_167, 50_000
NUM_TRAIN_BATCHES = 10
WHAT = "Imagenet64_train_part1_npz/, ..._part2_npz/ and Imagenet64_val_npz/"
_FILE_RE = re.compile(r"^(?:train_data_batch_(\d+)|(val_data))(\.npz)?$")
_RESOLUTION_DIR_RE = re.compile(r"^imagenet(\d+)_", re.IGNORECASE)


class SubsetWarning(UserWarning):
    """The release files found hold fewer images than the full downsampled ImageNet."""


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy-array whitelist."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only what a pickled dict of numpy arrays needs; anything else is refused."""

    _ALLOWED = {"_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype"}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]  # numpy 1.x pickles under numpy 2
        if (
            (module in ("numpy", "numpy._core.multiarray", "numpy._core.numeric") and name in self._ALLOWED)
            or (module == "numpy.dtypes" and name.endswith("DType"))
            or (module, name) == ("_codecs", "encode")  # how protocol 2 stores bytes from Python 3
        ):
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refusing to unpickle {module}.{name}")


def find_release_files(root: Path, size: int) -> tuple[dict[int, Path], Path, list[str]]:
    """{batch index: path} of the ``train_data_batch_k`` files under ``root`` (one level deep), the
    ``val_data`` file and notes about choices made; ValueError when either is missing."""
    folders = [root]
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "gmsop-cache"):
        m = _RESOLUTION_DIR_RE.match(d.name)
        if m is None or int(m.group(1)) == size:
            folders.append(d)
    found: dict[object, list[Path]] = {}
    for folder in folders:
        for p in sorted(folder.iterdir()):
            m = _FILE_RE.match(p.name)
            if m is None or not p.is_file():
                continue
            key = "val" if m.group(2) else int(m.group(1))
            found.setdefault(key, []).append(p)
    notes: list[str] = []
    chosen: dict[object, Path] = {}
    for key, paths in found.items():
        npz = [p for p in paths if p.suffix == ".npz"]
        pkl = [p for p in paths if p.suffix != ".npz"]
        for group in (npz, pkl):
            if len(group) > 1:
                raise ValueError(
                    f"imagenet64: {len(group)} copies of {group[0].name} under {root}: "
                    f"{', '.join(map(str, group))}; keep one or point root at one release"
                )
        chosen[key] = npz[0] if npz else pkl[0]
        if npz and pkl:
            notes.append(f"{pkl[0]} ignored in favour of {npz[0]}")
    train = {k: p for k, p in chosen.items() if k != "val"}
    bad = sorted(k for k in train if not 1 <= k <= NUM_TRAIN_BATCHES)  # type: ignore[operator]
    if bad:
        raise ValueError(
            f"imagenet64: unexpected training batch number(s) {bad} under {root} (expected 1..10)"
        )
    where = f"under {root} (looked in it and its sub-folders)"
    if not train:
        raise ValueError(f"imagenet64: no train_data_batch_* files {where}")
    if "val" not in chosen:
        raise ValueError(f"imagenet64: no val_data or val_data.npz {where}")
    return dict(sorted(train.items())), chosen["val"], notes  # type: ignore[arg-type]


def _load_raw(path: Path, keys: tuple[str, ...]) -> dict[str, object]:
    """Read ``keys`` from one release file (npz or pickle), naming the file on any failure."""
    if path.suffix == ".npz":
        return load_npz(path, keys)
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise ValueError(
            f"{path}: {exc}; a release pickle holds only numpy arrays, lists and numbers"
        ) from None
    except (ValueError, OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as exc:
        raise unreadable(path, exc) from None
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path}: expected a pickled dict with 'data' and 'labels', got {type(obj).__name__}"
        )
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(map(str, obj))}")
    return {k: obj[k] for k in keys}


def _labels_0based(raw: object, n: int | None, num_classes: int, path: Path) -> np.ndarray:
    labels = np.asarray(raw)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be a 1-D integer sequence, got {labels.dtype} {labels.shape}")
    if n is not None and len(labels) != n:
        raise ValueError(f"{path}: {len(labels)} labels for {n} images")
    if len(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 1 or hi > num_classes:
            bad = int(np.flatnonzero((labels < 1) | (labels > num_classes))[0])
            hint = " (this format's labels are 1-based)" if lo == 0 else ""
            raise ValueError(
                f"{path}: label {int(labels[bad])} at index {bad} is outside 1..{num_classes}{hint}"
            )
    return labels.astype(np.int64) - 1


def read_batch(path: Path, size: int, num_classes: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One release file as uint8 images (n, 3, size, size) and 0-based int64 labels (n,)."""
    raw = _load_raw(path, ("data", "labels"))
    data = raw["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array (n, 3*{size}*{size}), got {desc}")
    n, row = data.shape
    if row != 3 * size * size:
        s = int(round((row / 3) ** 0.5))
        hint = f" (rows of {row} values are {s}x{s} images: pass size={s})" if 3 * s * s == row else ""
        raise ValueError(
            f"{path}: rows hold {row} values, expected 3*{size}*{size} = {3 * size * size}{hint}"
        )
    labels = _labels_0based(raw["labels"], n, num_classes, path)
    return data.reshape(n, 3, size, size), labels  # R, G, B planes: (n, 3*S*S) -> (n, 3, S, S)


def _convert_split(
    files: list[Path], cache_dir: Path, split: str, size: int, num_classes: int
) -> tuple[int, ChannelStats]:
    """Count (reading only the labels of an npz), then copy ``files`` into the split's cache files,
    one file in memory at a time."""
    counts = [len(_labels_0based(_load_raw(p, ("labels",))["labels"], None, num_classes, p)) for p in files]
    total = sum(counts)
    if total == 0:
        raise ValueError(
            f"imagenet64: the {split} split is empty: {', '.join(map(str, files))} hold 0 images"
        )
    labels = np.empty(total, dtype=np.int64)
    stats = ChannelStats(what=f"imagenet64: the {split} split")
    with cache.atomic_memmap(cache.images_path(cache_dir, split), (total, 3, size, size)) as out:
        offset = 0
        for path, expected in zip(files, counts):
            x, y = read_batch(path, size, num_classes)  # (n, 3, S, S), (n,)
            if len(x) != expected:
                raise ValueError(
                    f"{path}: holds {len(x)} images now but {expected} when counted; did it change?"
                )
            out[offset : offset + len(x)] = x
            labels[offset : offset + len(x)] = y
            stats.update(x)
            offset += len(x)
    cache.atomic_save_npy(cache.labels_path(cache_dir, split), labels)
    return total, stats


@registry.register_source_files("imagenet64")
def _imagenet64_files(root: Path | None, size: int = 64, **_) -> list[Path]:
    train_files, val_file, _ = find_release_files(require_root("imagenet64", root, WHAT), int(size))
    return [*train_files.values(), val_file]


@registry.register_augment_presets("imagenet64")
def _augment_presets(**options) -> dict[str, AugmentSpec]:
    return {
        "none": AugmentSpec(),
        "flip": AugmentSpec(flip=True),
        "star": AugmentSpec(flip_double=True, pad=4, eval_pad_crop=True),
    }


@registry.register_dataset("imagenet64")
def imagenet64(
    root: Path | None,
    size: int = 64,
    num_classes: int = 1000,
    cache_dir: str | Path | None = None,
    require_full: bool = False,
    augment: str | AugmentSpec | dict | None = "flip",
) -> Dataset:
    """Downsampled ImageNet at ``size`` x ``size`` (64 in the paper; 32, 16, 8 also released)."""
    name = "imagenet64"
    root = require_root(name, root, WHAT)
    size = require_int(name, "size", size, 1)
    num_classes = require_int(name, "num_classes", num_classes, 2)
    aug = registry.augment_spec(name, {"augment": augment})
    train_files, val_file, notes = find_release_files(root, size)
    files = [*train_files.values(), val_file]
    cdir = cache.dataset_cache_dir(root, cache_dir, f"imagenet{size}")
    fp = cache.fingerprint(files, {"size": size, "num_classes": num_classes}, base=root)
    meta = cache.read_meta(cdir, fp)
    if meta is None:
        cache.invalidate(cdir)
        n_train, stats = _convert_split(list(train_files.values()), cdir, "train", size, num_classes)
        n_val, _ = _convert_split([val_file], cdir, "val", size, num_classes)
        missing = sorted(set(range(1, NUM_TRAIN_BATCHES + 1)) - set(train_files))
        if missing:
            notes.append(f"subset: training batches {missing} are missing")
        if n_train != FULL_TRAIN:
            notes.append(f"subset: {n_train:,} of {FULL_TRAIN:,} training images")
        if n_val != FULL_VAL:
            notes.append(f"subset: {n_val:,} of {FULL_VAL:,} validation images")
        mean, std = stats.result()
        shapes = {"train": {"shape": [n_train, 3, size, size]}, "val": {"shape": [n_val, 3, size, size]}}
        files = [str(p.relative_to(root)) for p in files]
        fields = dict(dataset=name, splits=shapes, num_classes=num_classes, mean=mean, std=std, notes=notes)
        meta = cache.write_meta(cdir, fp, {**fields, "files": files})
    subset_notes = [n for n in meta["notes"] if n.startswith("subset")]
    if subset_notes:
        if require_full:
            raise ValueError(
                f"{name}: require_full=True but {root} holds a subset: {'; '.join(subset_notes)}"
            )
        warnings.warn(f"{name} at {root}: {'; '.join(subset_notes)}", SubsetWarning, stacklevel=3)
    info = dict(source=str(root), cache=str(cdir), size=size, files=meta["files"], notes=meta["notes"])
    return cache.load_dataset(cdir, meta, name=name, num_classes=num_classes, augment=aug, info=info)
