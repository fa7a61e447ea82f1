"""Exact per-channel mean and standard deviation of uint8 images, in bounded memory.

A uint8 channel has 256 values, so a histogram per channel (``np.bincount``) gives the sums exactly
and never a float copy of the data; ``ChannelStats`` accumulates chunk by chunk.
"""

from __future__ import annotations

import numpy as np


class ChannelStats:
    """Running per-channel histogram of uint8 images shaped (N, C, H, W); ``what`` names the
    images (e.g. "npz: train split of /data/train.npz[x]") in the error an empty split gives."""

    def __init__(self, channels: int = 3, what: str | None = None) -> None:
        self.hist = np.zeros((channels, 256), dtype=np.int64)
        self.what = what

    def update(self, images: np.ndarray) -> None:
        """Add a chunk (n, C, H, W) of uint8 images."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != self.hist.shape[0]:
            c = self.hist.shape[0]
            raise ValueError(f"ChannelStats expects uint8 (n, {c}, H, W), got {images.dtype} {images.shape}")
        for c in range(self.hist.shape[0]):
            self.hist[c] += np.bincount(np.ascontiguousarray(images[:, c]).ravel(), minlength=256)

    def result(self, min_std: float = 1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel on the 0-255 scale, population std floored at ``min_std`` (a
        constant channel divided by 1 grey level stays finite)."""
        values = np.arange(256, dtype=np.float64)
        count = self.hist.sum(axis=1).astype(np.float64)
        if np.any(count == 0):
            raise ValueError(
                f"{self.what or 'a training split'} is empty (0 images): no per-channel mean and std"
            )
        mean = (self.hist * values).sum(axis=1) / count
        var = (self.hist * (values - mean[:, None]) ** 2).sum(axis=1) / count
        std = np.maximum(np.sqrt(var), min_std)
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def channel_mean_std(
    images: np.ndarray, chunk: int = 4096, what: str | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 images (N, C, H, W), reading ``chunk`` images at a time;
    ``what`` names them in the error an empty array gives."""
    stats = ChannelStats(images.shape[1], what=what)
    for start in range(0, images.shape[0], chunk):
        stats.update(np.asarray(images[start : start + chunk]))
    return stats.result()
