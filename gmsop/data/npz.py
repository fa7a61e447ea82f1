"""``npz``: your own arrays, ``x`` uint8 images and ``y`` 0-based integer labels, in ``.npz`` files.

``root`` is a folder with train.npz and val.npz (keys x, y) or one .npz with x_train, y_train,
x_val, y_val. ``x`` is (N, 3, H, W) or (N, H, W, 3) (the axis holding 3 is the channel axis; an
ambiguous shape needs ``layout``), or grey (N, H, W), (N, 1, H, W), (N, H, W, 1), replicated to
R = G = B. ``num_classes`` defaults to max(train y) + 1. Errors name the file and array; arrays are
loaded into memory, nothing is written. Presets: ``flip`` (default), ``none``, ``pad_crop``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from gmsop.data._checks import require_choice, require_int, require_root
from gmsop.data.base import AugmentSpec, Dataset, Split, check_labels, resolve_augment
from gmsop.data.registry import register_dataset, register_source_files, register_train_size
from gmsop.data.stats import channel_mean_std

LAYOUTS = ("auto", "NCHW", "NHWC")
WHAT = "train.npz and val.npz (keys x, y), or a .npz file with x_train, y_train, x_val, y_val"


def _channels_layout(x: np.ndarray, layout: str, source: str) -> str:
    """The layout of a 4-D array: ``layout`` itself, or the axis (1 or 3) holding 3, else 1, channels."""
    if layout != "auto":
        return layout
    for channels in (3, 1):
        nchw, nhwc = x.shape[1] == channels, x.shape[3] == channels
        if nchw and nhwc:
            raise ValueError(
                f"{source}: shape {x.shape} is ambiguous (axis 1 and axis 3 are both {channels}); "
                f"pass layout='NCHW' or layout='NHWC'"
            )
        if nchw or nhwc:
            return "NCHW" if nchw else "NHWC"
    raise ValueError(
        f"{source}: shape {x.shape} has no axis of 3 colour channels (or 1 grey channel) at position 1 or 3"
    )


def to_nchw(x: np.ndarray, layout: str, source: str) -> tuple[np.ndarray, int]:
    """uint8 (N, 3, H, W) from an NCHW, NHWC or grey array (its channel replicated to 3), and the
    number of channels in the file (1 or 3)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        desc = f"{x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{source}: images must be uint8 (scale floats to 0..255 first), got {desc}")
    if x.ndim == 3:  # (N, H, W) grayscale
        x, layout = x[:, None], "NCHW"
    if x.ndim != 4:
        raise ValueError(
            f"{source}: images must be (N, 3, H, W) or (N, H, W, 3), or grayscale (N, H, W), (N, 1, H, W) "
            f"or (N, H, W, 1); got shape {x.shape}"
        )
    layout = _channels_layout(x, layout, source)
    axis = 1 if layout == "NCHW" else 3
    if x.shape[axis] not in (1, 3):
        want = "(N, 3, H, W) or (N, 1, H, W)" if layout == "NCHW" else "(N, H, W, 3) or (N, H, W, 1)"
        raise ValueError(f"{source}: layout {layout} needs shape {want}, got {x.shape}")
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)
    if x.shape[1] == 1:
        return np.repeat(x, 3, axis=1), 1  # grey -> R = G = B: (N, 1, H, W) -> (N, 3, H, W)
    return x, 3


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays ``keys`` of an .npz file, with one error naming the file for anything wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(z.files)}")
            return {k: z[k] for k in keys}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise unreadable(path, exc) from None


def unreadable(path: Path, exc: Exception) -> ValueError:
    """The one message for an npz that cannot be read: the file, the reason, what it may mean."""
    if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
        return exc
    return ValueError(
        f"{path}: cannot read ({type(exc).__name__}: {exc}); the file may be truncated or corrupt"
    )


def _labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{source}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise ValueError(f"{source}: {len(y)} labels for {n} images")
    if y.size and int(y.min()) < 0:
        i = int(np.argmax(y < 0))
        raise ValueError(f"{source}: negative label {int(y[i])} at index {i}; labels must be 0-based")
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
    root = require_root(name, root, WHAT)
    layout = require_choice(name, "layout", layout, LAYOUTS)
    arrays, channels = {}, {}
    for split, (path, keys) in _sources(root).items():
        src, ysrc = f"{path}[{keys[0]}]", f"{path}[{keys[1]}]"
        x, y = load_npz(path, keys).values()
        x, channels[split] = to_nchw(x, layout, src)
        if len(x) == 0:
            raise ValueError(f"npz: the {split} split is empty: {src} holds 0 images")
        arrays[split] = (x, _labels(y, len(x), ysrc), src, ysrc)
    (x_train, y_train, src_train, ysrc_train), (_, y_val, _, ysrc_val) = arrays["train"], arrays["val"]
    if num_classes is None:  # the classes seen in training
        num_classes = int(y_train.max()) + 1
        if num_classes < 2:
            raise ValueError(f"{ysrc_train}: every training label is 0; need at least 2 classes")
        if int(y_val.max()) >= num_classes:
            i = int(np.argmax(y_val >= num_classes))
            raise ValueError(
                f"{ysrc_val}: label {int(y_val[i])} at index {i} is outside the classes seen in training "
                f"(0..{num_classes - 1}, from {ysrc_train}); pass num_classes= if training lacks classes"
            )
    num_classes = require_int(name, "num_classes", num_classes, 2)
    for _, y, _, ysrc in arrays.values():
        check_labels(y, num_classes, ysrc)  # an explicit num_classes: the error names the y array
    mean, std = channel_mean_std(x_train, what=f"npz: the train split ({src_train})")
    h = x_train.shape[2]
    presets = {
        "flip": AugmentSpec(flip=True),
        "none": AugmentSpec(),
        "pad_crop": AugmentSpec(flip=True, pad=max(1, h // 8)),
    }
    train, val = (
        Split(torch.from_numpy(x), torch.from_numpy(y), source=src) for x, y, src, _ in arrays.values()
    )
    notes = ["grayscale: the one channel is replicated to R, G, B"] if 1 in channels.values() else []
    return Dataset(
        name=name,
        num_classes=num_classes,
        train=train,
        val=val,
        mean=mean,
        std=std,
        augment=resolve_augment(augment, presets, "flip", name),
        info={"source": str(root), "layout": layout, "channels": channels["train"], "notes": notes},
    )


def _sources(root: Path) -> dict[str, tuple[Path, tuple[str, str]]]:
    """split -> (file, (images key, labels key)) of the packaging ``root`` is."""
    if root.is_dir():
        sources = {s: (root / f"{s}.npz", ("x", "y")) for s in ("train", "val")}
        for path, _ in sources.values():
            if not path.is_file():
                raise ValueError(f"npz: missing {path}; expected train.npz and val.npz with keys x and y")
        return sources
    return {s: (root, (f"x_{s}", f"y_{s}")) for s in ("train", "val")}


@register_source_files("npz")
def _npz_files(root: Path | None, **_) -> list[Path]:
    return sorted({path for path, _ in _sources(require_root("npz", root, WHAT)).values()})


def _header_length(zf: zipfile.ZipFile, member: str) -> int:
    """The first dimension of array ``member`` (``x.npy``), read from its header (no data read)."""
    with zf.open(member) as fh:
        fmt = np.lib.format
        version = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read_header(fh)
    return int(shape[0]) if shape else 0


@register_train_size("npz")
def _npz_train_size(root: Path | None, **_) -> int | None:
    """Images in the training ``x`` array, from the .npy headers in the zips (no data read); every
    split's headers are read, so a bad file, key or label count fails (ValueError) when planning."""
    if root is None:
        return None
    sizes = {}
    for split, (path, keys) in _sources(root).items():
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
                missing = [k for k in keys if k not in names]
                if missing:
                    raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(names)}")
                n_x, n_y = (_header_length(zf, f"{k}.npy") for k in keys)
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise unreadable(path, exc) from None
        if n_x != n_y:
            raise ValueError(f"{path}[{keys[1]}]: {n_y} labels for {n_x} images")
        sizes[split] = n_x
    return sizes["train"]
