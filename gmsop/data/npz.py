"""``npz``: your own arrays, ``x`` uint8 images and ``y`` integer labels, in NumPy ``.npz`` files.

Accepted packagings (``root`` is a folder or a file):

    <root>/train.npz and <root>/val.npz, each with keys x and y
    <root> = one .npz with keys x_train, y_train, x_val, y_val

``x`` is uint8 with shape (N, 3, H, W) or (N, H, W, 3). The layout is read from where the 3 is;
when both axis 1 and axis 3 are 3 (e.g. (N, 3, 5, 3)) it is ambiguous and refused unless
``layout="NCHW"`` or ``"NHWC"`` says which. ``y`` is (N,) of any integer type, 0-based.
``num_classes`` defaults to max(y) + 1 over both splits. The arrays are loaded into memory and
stored as (N, 3, H, W) (an NHWC array is transposed once); no cache is written, since reading
an uncompressed .npz is already a plain copy.

Augmentation presets: ``flip`` (default), ``none``, ``pad_crop`` (flip, pad H // 8, crop back).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from gmsop.data._checks import require_choice, require_int, require_root
from gmsop.data.base import AugmentSpec, Dataset, Split, resolve_augment
from gmsop.data.registry import register_dataset
from gmsop.data.stats import channel_mean_std

__all__ = ["npz", "to_nchw", "LAYOUTS"]

LAYOUTS = ("auto", "NCHW", "NHWC")


def to_nchw(x: np.ndarray, layout: str, source: str) -> np.ndarray:
    """uint8 (N, 3, H, W) from an NCHW or NHWC array; the layout is detected when ``auto``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        desc = f"{x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{source}: images must be uint8 (scale floats to 0..255 first), got {desc}")
    if x.ndim != 4:
        raise ValueError(f"{source}: images must be 4-D (N, 3, H, W) or (N, H, W, 3), got shape {x.shape}")
    if layout == "auto":
        nchw, nhwc = x.shape[1] == 3, x.shape[3] == 3
        if nchw and nhwc:
            raise ValueError(
                f"{source}: shape {x.shape} is ambiguous (axis 1 and axis 3 are both 3); "
                f"pass layout='NCHW' or layout='NHWC'"
            )
        if not (nchw or nhwc):
            raise ValueError(f"{source}: shape {x.shape} has no axis of 3 colour channels at position 1 or 3")
        layout = "NCHW" if nchw else "NHWC"
    if layout == "NCHW":
        if x.shape[1] != 3:
            raise ValueError(f"{source}: layout NCHW needs shape (N, 3, H, W), got {x.shape}")
        return x
    if x.shape[3] != 3:
        raise ValueError(f"{source}: layout NHWC needs shape (N, H, W, 3), got {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, 3) -> (N, 3, H, W)


def _load(path: Path, keys: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(z.files)}")
            return z[keys[0]], z[keys[1]]
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read ({exc}); the file may be truncated or corrupt") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read ({type(exc).__name__}: {exc}); the file may be truncated") from None


def _labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{source}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise ValueError(f"{source}: {len(y)} labels for {n} images")
    return y.astype(np.int64)


@register_dataset("npz")
def npz(
    root: Path | None,
    layout: str = "auto",
    num_classes: int | None = None,
    augment: str | AugmentSpec | dict | None = "flip",
) -> Dataset:
    """Images and labels from ``root``/train.npz + val.npz, or one .npz file with _train/_val keys."""
    name = "npz"
    what = "train.npz and val.npz (keys x, y), or a .npz file with x_train, y_train, x_val, y_val"
    root = require_root(name, root, what)
    layout = require_choice(name, "layout", layout, LAYOUTS)
    if root.is_dir():
        sources = {s: (root / f"{s}.npz", ("x", "y")) for s in ("train", "val")}
        for path, _ in sources.values():
            if not path.is_file():
                raise ValueError(f"npz: missing {path}; expected train.npz and val.npz with keys x and y")
    else:
        sources = {s: (root, (f"x_{s}", f"y_{s}")) for s in ("train", "val")}
    arrays = {}
    for split, (path, keys) in sources.items():
        src = f"{path}[{keys[0]}]"
        x, y = _load(path, keys)
        x = to_nchw(x, layout, src)
        arrays[split] = (x, _labels(y, len(x), f"{path}[{keys[1]}]"), src)
    if num_classes is None:
        num_classes = max(int(a[1].max(initial=-1)) for a in arrays.values()) + 1
        if any(int(a[1].min(initial=0)) < 0 for a in arrays.values()):
            bad = next(a for a in arrays.values() if int(a[1].min(initial=0)) < 0)
            raise ValueError(f"{bad[2]}: negative label {int(bad[1].min())}; labels must be 0-based")
    num_classes = require_int(name, "num_classes", num_classes, 2)
    x_train = arrays["train"][0]
    mean, std = channel_mean_std(x_train)
    h = x_train.shape[2]
    presets = {
        "flip": AugmentSpec(flip=True),
        "none": AugmentSpec(),
        "pad_crop": AugmentSpec(flip=True, pad=max(1, h // 8)),
    }
    splits = {s: Split(torch.from_numpy(x), torch.from_numpy(y), source=src) for s, (x, y, src) in arrays.items()}
    return Dataset(
        name=name,
        num_classes=num_classes,
        train=splits["train"],
        val=splits["val"],
        mean=mean,
        std=std,
        augment=resolve_augment(augment, presets, "flip", name),
        info={"source": str(root), "layout": layout, "notes": []},
    )
