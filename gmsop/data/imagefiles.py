"""Decode and resize image files (JPEG, PNG, ...) into the uint8 memmap cache (``places365``, ``folder``).

Worker processes fill rows of the temporary memmap (bicubic resize after RGB conversion). Bad files
are all named in one error; the rows that decoded are kept (``<split>_partial.npy`` with a
``_rows.json`` index, as every complete split has), so the next conversion decodes only new,
changed or failed files.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from gmsop.atomic import atomic_write, atomic_write_json
from gmsop.data import cache
from gmsop.data.base import AugmentSpec, Dataset
from gmsop.data.stats import ChannelStats

FITS = ("stretch", "crop")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_CHUNK = 1024  # files per worker task
_SHOWN = 50  # bad files listed in an error message (all of them go to <split>_bad_files.txt)


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


class BadImageFiles(ValueError):
    """Listed image files that are missing or cannot be decoded (every one of them named)."""


def _fill_rows(
    out_file: str, rows: Sequence[int], paths: Sequence[str], size: int, fit: str
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Worker: decode ``paths`` into ``rows`` of the memmap; the histogram of the rows filled and
    (row, reason) for each file that failed."""
    out = np.load(out_file, mmap_mode="r+")
    done, failed = [], []
    for row, p in zip(rows, paths):
        try:
            out[row] = decode_resize(p, size, fit)
            done.append(row)
        except ValueError as exc:
            failed.append((row, str(exc)))
    stats = ChannelStats()
    if done:
        stats.update(np.asarray(out[done]))
    out.flush()
    return stats.hist, failed


def _stamp(path: str) -> list[int] | None:
    """[size, mtime_ns] of a file, None when it is missing (the key of a kept row)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if os.path.isfile(path) else None


def _index_path(images: Path) -> Path:
    return images.with_name(images.stem + "_rows.json")


def _kept_rows(cache_dir: Path, split: str, size: int, fit: str) -> list[tuple[Path, dict[str, list]]]:
    """(images file, {image path: [size, mtime_ns, row]}) of the earlier conversions of ``split``
    (the last complete one, the partial one) made at this size and fit."""
    kept = []
    for images in (cache.images_path(cache_dir, split), _partial_path(cache_dir, split)):
        try:
            index = json.loads(_index_path(images).read_text())
        except (OSError, ValueError):
            continue
        if images.is_file() and index.get("size") == size and index.get("fit") == fit:
            kept.append((images, {f[0]: [f[1], f[2], row] for row, f in enumerate(index["files"]) if f}))
    return kept


def _write_index(images: Path, size: int, fit: str, names: list[str], done: dict[int, list]) -> None:
    """Beside an images file: which file (path, size, mtime_ns) each row holds, null if none."""
    files = [[names[i], *done[i]] if i in done else None for i in range(len(names))]
    atomic_write_json(_index_path(images), {"size": size, "fit": fit, "files": files}, indent=None)


def _partial_path(cache_dir: Path, split: str) -> Path:
    return Path(cache_dir) / f"{split}_partial.npy"


def _bad_files_message(dataset: str, split: str, bad: list[str], total: int, listing: Path | None) -> str:
    shown = bad if len(bad) <= _SHOWN else bad[:_SHOWN] + [f"... and {len(bad) - _SHOWN} more"]
    kept = (
        f"; the {total - len(bad)} others are converted and kept, so the next run decodes only these"
        if listing is not None
        else ""
    )
    where = f" (all of them in {listing})" if listing is not None and len(bad) > _SHOWN else ""
    return (
        f"{dataset}: {len(bad)} of {total} {split} image files cannot be used{kept}; fix or remove them "
        f"(from the list or the folder) and run again{where}:\n  " + "\n  ".join(shown)
    )


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
    """Write ``<split>_images.npy`` and ``<split>_labels.npy`` for ``paths`` atomically; return the
    images' ``ChannelStats``. Rows decoded before from the same file (path, size, mtime) are copied;
    bad files are all named in one ``BadImageFiles`` and the good rows kept for the next try."""
    n = len(paths)
    stats = ChannelStats(what=f"{dataset}: the {split} split")
    names = [str(p) for p in paths]
    stamps = [_stamp(p) for p in names]
    bad = {i: f"missing: {names[i]}" for i, st in enumerate(stamps) if st is None}
    kept = _kept_rows(cache_dir, split, size, fit)
    done: dict[int, list] = {}  # row -> [size, mtime_ns] of the file it holds
    with cache.atomic_memmap(cache.images_path(cache_dir, split), (n, 3, size, size)) as out:
        for images, rows in kept:  # copy what an earlier conversion decoded from the same files
            reuse = [
                (i, rows[p][2])
                for i, p in enumerate(names)
                if i not in done and i not in bad and rows.get(p, [None])[:2] == stamps[i]
            ]
            if reuse:
                old = np.load(images, mmap_mode="r")
                for s in range(0, len(reuse), _CHUNK):
                    new_rows, old_rows = zip(*reuse[s : s + _CHUNK])
                    out[list(new_rows)] = old[list(old_rows)]
                    stats.update(np.asarray(out[list(new_rows)]))
                done.update((i, stamps[i]) for i, _ in reuse)
                del old
        out.flush()  # the header, size and copied rows are on disk before workers open the file
        out_file = str(out.filename)
        todo = [i for i in range(n) if i not in done and i not in bad]
        tasks = [todo[s : s + _CHUNK] for s in range(0, len(todo), _CHUNK)]
        results = _decode(out_file, tasks, names, size, fit, workers)
        for rows, (hist, failed) in zip(tasks, results):
            stats.hist += hist
            failed_rows = {row for row, _ in failed}
            bad.update((row, f"cannot decode: {reason}") for row, reason in failed)
            done.update((i, stamps[i]) for i in rows if i not in failed_rows)
        if bad:
            partial = _partial_path(cache_dir, split)
            _index_path(partial).unlink(missing_ok=True)  # never an index over other bytes
            os.replace(out_file, partial)  # keep what decoded: the next conversion copies it
            _write_index(partial, size, fit, names, done)
            listing = Path(cache_dir) / f"{split}_bad_files.txt"
            lines = [bad[i] for i in sorted(bad)]
            atomic_write(listing, "".join(f"{line}\n" for line in lines))
            raise BadImageFiles(_bad_files_message(dataset, split, lines, n, listing))
    cache.atomic_save_npy(cache.labels_path(cache_dir, split), np.asarray(labels, dtype=np.int64))
    _write_index(cache.images_path(cache_dir, split), size, fit, names, done)
    for stale in (
        _partial_path(cache_dir, split),
        _index_path(_partial_path(cache_dir, split)),
        Path(cache_dir) / f"{split}_bad_files.txt",
    ):
        stale.unlink(missing_ok=True)
    return stats


def _decode(
    out_file: str, tasks: list[list[int]], names: list[str], size: int, fit: str, workers: int
) -> list[tuple[np.ndarray, list[tuple[int, str]]]]:
    """``_fill_rows`` over ``tasks`` (lists of rows), in ``workers`` processes when it pays."""
    if workers <= 1 or len(tasks) <= 1:
        return [_fill_rows(out_file, rows, [names[i] for i in rows], size, fit) for rows in tasks]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = [
            pool.submit(_fill_rows, out_file, rows, [names[i] for i in rows], size, fit) for rows in tasks
        ]
        try:
            return [fut.result() for fut in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def default_workers() -> int:
    """Worker processes for decoding: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cached_image_dataset(
    name: str,
    root: Path,
    classes: Sequence[str],
    splits,
    cache_dir: Path,
    fingerprint: str,
    size: int,
    fit: str,
    workers: int,
    augment: AugmentSpec,
    info: dict | None = None,
    full_sizes: dict[str, int] | None = None,
) -> Dataset:
    """A dataset of image files at ``size`` x ``size``, mapped from ``cache_dir`` when its meta matches
    ``fingerprint``, else converted first from ``splits()`` (``{"train": (paths, labels), ...}``):
    every split is tried and the bad files of all named in one ``BadImageFiles`` (missing ones before
    any decoding). A split smaller than in ``full_sizes`` is noted as a subset."""
    meta = cache.read_meta(cache_dir, fingerprint)
    if meta is None:
        cache.invalidate(cache_dir)
        lists, dataset = splits(), f"{name} at {root}"
        missing = [f"missing: {p}" for paths, _ in lists.values() for p in paths if not os.path.isfile(p)]
        if missing:
            total = sum(len(paths) for paths, _ in lists.values())
            raise BadImageFiles(_bad_files_message(dataset, "listed", missing, total, None))
        stats, errors = {}, []
        for split, (paths, labels) in lists.items():
            try:
                stats[split] = convert_image_files(
                    paths, labels, cache_dir, split, size, fit, workers, dataset
                )
            except BadImageFiles as err:
                errors.append(str(err))
        if errors:
            raise BadImageFiles("\n".join(errors))
        shapes, notes = {}, []
        for split in ("train", "val"):
            n = len(lists[split][0])
            shapes[split] = {"shape": [n, 3, size, size]}
            full = (full_sizes or {}).get(split)
            if full is not None and n != full:
                notes.append(f"subset: {n:,} of {full:,} {split} images")
        mean, std = stats["train"].result()
        fields = dict(dataset=name, splits=shapes, num_classes=len(classes), mean=mean, std=std, notes=notes)
        meta = cache.write_meta(cache_dir, fingerprint, fields)
    info = {"source": str(root), "cache": str(cache_dir), "size": size, **(info or {})}
    info["notes"] = meta["notes"]
    fields = dict(name=name, num_classes=len(classes), augment=augment, classes=tuple(classes), info=info)
    return cache.load_dataset(cache_dir, meta, **fields)
