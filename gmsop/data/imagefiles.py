"""Decode and resize image files (JPEG, PNG, ...) into a split of the uint8 memmap cache.

Shared by ``places365`` and ``folder``: both are lists of (image file, label) that are decoded
once with PIL, resized, and written into ``<cache_dir>/<split>_images.npy`` (see
``gmsop.data.cache``). Decoding 1.8M JPEGs is the slow part of preparing Places365, so chunks of
files are handed to worker processes that each open the (temporary) memmap ``r+`` and fill
their own rows; the per-channel histograms come back with each chunk.

``fit`` chooses how an image becomes ``size`` x ``size``:
    "stretch": resize both sides to ``size`` (what the paper does to Places365's square images);
    "crop":    resize the shorter side to ``size`` keeping the aspect ratio, then centre-crop.
Both use bicubic interpolation; every image is converted to RGB first (greyscale and CMYK
JPEGs exist in Places365).
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from gmsop.data import cache
from gmsop.data.stats import ChannelStats

__all__ = ["FITS", "decode_resize", "convert_image_files", "IMAGE_EXTENSIONS"]

FITS = ("stretch", "crop")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_CHUNK = 1024  # files per worker task


def decode_resize(path: str | Path, size: int, fit: str = "stretch") -> np.ndarray:
    """One image file as uint8 (3, size, size), R, G, B; ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if fit == "stretch":
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            elif fit == "crop":
                w, h = im.size
                scale = size / min(w, h)
                nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
                im = im.resize((nw, nh), Image.Resampling.BICUBIC)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            else:
                raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
            hwc = np.asarray(im, dtype=np.uint8)  # (size, size, 3)
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from None
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))  # (3, size, size)


def _fill_rows(out_file: str, start: int, paths: Sequence[str], size: int, fit: str) -> np.ndarray:
    """Worker: decode ``paths`` into rows start.. of the memmap; return their histogram."""
    out = np.load(out_file, mmap_mode="r+")
    for i, p in enumerate(paths):
        out[start + i] = decode_resize(p, size, fit)
    stats = ChannelStats()
    stats.update(np.asarray(out[start : start + len(paths)]))
    out.flush()
    return stats.hist


def convert_image_files(
    paths: Sequence[str | Path],
    labels: np.ndarray,
    cache_dir: Path,
    split: str,
    size: int,
    fit: str = "stretch",
    workers: int = 1,
    dataset: str = "images",
) -> ChannelStats:
    """Write ``<split>_images.npy`` and ``<split>_labels.npy`` for ``paths`` atomically.

    Returns the per-channel histogram of the written images. ``dataset`` names the data in errors.
    """
    n = len(paths)
    if len(labels) != n:
        raise ValueError(f"{dataset}: {split}: {len(labels)} labels for {n} image files")
    if n == 0:
        raise ValueError(f"{dataset}: the {split} split is empty (0 image files)")
    stats = ChannelStats(what=f"{dataset}: the {split} split")
    names = [str(p) for p in paths]
    tasks = [(s, names[s : s + _CHUNK]) for s in range(0, n, _CHUNK)]
    with cache.atomic_memmap(cache.images_path(cache_dir, split), (n, 3, size, size)) as out:
        out.flush()  # the header and size are on disk before workers open the file
        out_file = str(out.filename)
        if workers <= 1 or len(tasks) <= 1:
            for start, chunk in tasks:
                stats.hist += _fill_rows(out_file, start, chunk, size, fit)
        else:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
                futures = [pool.submit(_fill_rows, out_file, s, c, size, fit) for s, c in tasks]
                try:
                    for fut in futures:
                        stats.hist += fut.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    cache.atomic_save_npy(cache.labels_path(cache_dir, split), np.asarray(labels, dtype=np.int64))
    return stats


def default_workers() -> int:
    """Worker processes for decoding: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
