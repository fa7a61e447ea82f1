"""``BatchLoader``: uint8 batches of a ``Split`` moved to the training device, in a resumable order.

Why not ``torch.utils.data.DataLoader``: the data is one uint8 tensor (in memory or memory-mapped),
so a batch is a single ``index_select``; worker processes, collation and per-sample Python
objects would only add cost. What the loader does instead:

* **Order is a pure function of (seed, epoch).** Epoch e uses
  ``numpy.random.default_rng([seed, e]).permutation(n)``; nothing carries over between epochs,
  so a run resumed at epoch e (or at batch k of epoch e, ``iter_epoch(e, start_batch=k)``) sees
  exactly the batches an uninterrupted run sees. The indices inside one batch are sorted, which
  turns random reads from a memmap into forward sweeps; the set of samples per batch is unchanged.
* **Mirror doubling** (``flip_double``, Table 3's starred rows): the index space is 2N, sample
  j >= N is image j - N mirrored; the mirror is applied on the device.
* **Overlap.** One background thread gathers batch k + 1 (``index_select`` releases the GIL)
  while batch k is being used. For a CUDA device the gather writes into one of two pinned
  buffers and the copy is ``non_blocking``; a CUDA event per buffer keeps a buffer from being
  overwritten before its copy has finished.

Yields ``(images, labels)``: uint8 (B, 3, H, W) and int64 (B,) on ``device``. Augmentation and
normalisation are ``gmsop.data.augment``'s job. One iteration at a time per loader: the pinned
buffers are the loader's own.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from gmsop.data.augment import hflip_where
from gmsop.data.base import Split

__all__ = ["BatchLoader", "epoch_permutation", "batch_order"]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` samples in ``epoch``: depends on (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batch_order(
    n: int,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """The (sorted) sample indices of every batch of one epoch over ``n`` samples."""
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [np.sort(order[i : i + batch_size]) for i in range(0, stop, batch_size)]


class BatchLoader:
    """Iterate a ``Split`` in batches on ``device``.

    Args:
        split: the data.
        batch_size: samples per batch.
        shuffle: random order per epoch (training) or the stored order (evaluation).
        seed: with the epoch, fixes the order.
        drop_last: skip a final batch smaller than ``batch_size``.
        device: where batches are delivered.
        flip_double: epochs of 2N samples, the second N mirrored (``AugmentSpec.flip_double``).
        prefetch: gather the next batch in a background thread.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        flip_double: bool = False,
        prefetch: bool = True,
    ) -> None:
        if not isinstance(split, Split):
            raise ValueError(f"BatchLoader needs a Split, got {type(split).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be an int >= 1, got {batch_size!r}")
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.device = torch.device(device)
        self.flip_double, self.prefetch = flip_double, prefetch
        self.epoch = 0
        if drop_last and self.num_samples < batch_size:
            raise ValueError(
                f"BatchLoader: drop_last with batch_size {batch_size} > {self.num_samples} samples gives no batch"
            )
        self._pinned = self.device.type == "cuda" and torch.cuda.is_available()
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._events: list[torch.cuda.Event | None] = [None, None]

    @property
    def num_samples(self) -> int:
        """Samples per epoch (2N with ``flip_double``)."""
        return len(self.split) * (2 if self.flip_double else 1)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """The epoch ``iter(loader)`` will produce next."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_epoch(self.epoch)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """Virtual sample indices of each batch of ``epoch`` (>= N means mirrored with ``flip_double``)."""
        return batch_order(
            self.num_samples,
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
        )

    def _buffer(self, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._buffers:
            shape = (self.batch_size, *self.split.images.shape[1:])
            self._buffers = [
                (
                    torch.empty(shape, dtype=torch.uint8).pin_memory(),  # (B, 3, H, W)
                    torch.empty(self.batch_size, dtype=torch.int64).pin_memory(),  # (B,)
                )
                for _ in range(2)
            ]
        return self._buffers[slot]

    def _gather(self, virtual: np.ndarray, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images and labels of one batch on the CPU (pinned for CUDA), plus the mirror mask."""
        n = len(self.split)
        idx = torch.from_numpy(virtual % n if self.flip_double else virtual)  # (B,)
        mirror = torch.from_numpy(virtual >= n) if self.flip_double else None  # (B,)
        if self.split.images.device.type != "cpu":  # data already on an accelerator: index there
            idx = idx.to(self.split.images.device)
            labels = self.split.labels.index_select(0, idx.to(self.split.labels.device))
            return self.split.images.index_select(0, idx), labels, mirror
        if not self._pinned:
            return self.split.images.index_select(0, idx), self.split.labels.index_select(0, idx), mirror
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the copy out of this buffer (two batches ago) has finished
        bx, by = self._buffer(slot)
        x, y = bx[: len(idx)], by[: len(idx)]
        torch.index_select(self.split.images, 0, idx, out=x)
        torch.index_select(self.split.labels, 0, idx, out=y)
        return x, y, mirror

    def _deliver(self, x: torch.Tensor, y: torch.Tensor, mirror: torch.Tensor | None, slot: int):
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self._pinned:
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(self.device))  # after the copies just queued
                self._events[slot] = event
        if mirror is not None:
            x = hflip_where(x, mirror.to(self.device, non_blocking=True))
        return x, y

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch`` from batch ``start_batch`` on (mid-epoch resumption)."""
        batches = self.batch_indices(epoch)[start_batch:]
        if not batches:
            return
        if not self.prefetch:
            for k, virtual in enumerate(batches):
                yield self._deliver(*self._gather(virtual, k % 2), k % 2)
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gmsop-loader")
        try:
            future = pool.submit(self._gather, batches[0], 0)
            for k in range(len(batches)):
                x, y, mirror = future.result()
                if k + 1 < len(batches):
                    future = pool.submit(self._gather, batches[k + 1], (k + 1) % 2)
                yield self._deliver(x, y, mirror, k % 2)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
