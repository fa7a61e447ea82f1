"""``BatchLoader``: uint8 batches of a ``Split`` moved to the training device, in a resumable order.

A batch is one ``index_select`` of the split (no DataLoader workers). Epoch e's order is
``default_rng([seed, e]).permutation(n)`` (sorted within a batch, for forward memmap reads);
``flip_double`` makes the index space 2N (j >= N: image j - N mirrored). Host path: a thread gathers
batch k + 1 into one of two pinned buffers while batch k is used. Resident path (``"auto"``: the
split takes at most ``resident_fraction`` of free CUDA memory): the split is copied to the device
once and gathered there; batches are identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from gmsop.data.augment import hflip_where, small_to_device
from gmsop.data.base import Split


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` samples in ``epoch``: depends on (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batch_order(
    n: int, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_last: bool = False
) -> list[np.ndarray]:
    """The (sorted) sample indices of every batch of one epoch over ``n`` samples."""
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [np.sort(order[i : i + batch_size]) for i in range(0, stop, batch_size)]


class BatchLoader:
    """Iterate a ``Split`` in batches of uint8 (B, 3, H, W) images and int64 labels on ``device``.

    ``shuffle``: the (seed, epoch) order, else the stored one. ``prefetch``: gather the next batch
    in a thread (host gathers only). ``resident``: "auto", True or False (see the module docstring);
    ``placement`` says what was chosen and why. One iteration at a time per loader.
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
        resident: bool | str = "auto",
        resident_fraction: float = 0.5,
    ) -> None:
        if not isinstance(split, Split):
            raise ValueError(f"BatchLoader needs a Split, got {type(split).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be an int >= 1, got {batch_size!r}")
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.device = torch.device(device)
        self.flip_double, self.prefetch = flip_double, prefetch
        if drop_last and self.num_samples < batch_size:
            raise ValueError(
                f"BatchLoader: drop_last with batch_size {batch_size} > {self.num_samples} samples "
                "gives no batch"
            )
        if resident not in (True, False, "auto") or not isinstance(resident, (bool, str)):
            raise ValueError(f"BatchLoader: resident must be 'auto', True or False, got {resident!r}")
        f = resident_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"BatchLoader: resident_fraction must be a number in (0, 1], got {f!r}")
        self.resident_fraction = float(f)
        self._buffers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._events: list[torch.cuda.Event | None] = [None, None]
        self._data: tuple[torch.Tensor, torch.Tensor] | None = None  # (images, labels) on the device path
        self.resident, self.placement = self._place(resident)
        self._pinned = not self.resident and self.device.type == "cuda" and torch.cuda.is_available()

    def _place(self, resident: bool | str) -> tuple[bool, str]:
        """Decide where batches are gathered; move the split if it is to be resident."""
        images, labels = self.split.images, self.split.labels
        size = images.numel() * images.element_size() + labels.numel() * labels.element_size()
        if images.device.type != "cpu":  # already on an accelerator (a caller's choice): gather there
            self._data = (images, labels.to(images.device))
            return True, f"resident on {images.device} (given there, {_gb(size)})"
        dev = self.device
        if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())  # name the card in ``placement``
        if resident == "auto":
            if dev.type != "cuda" or not torch.cuda.is_available():
                return False, f"host memory ({dev})"
            free, total = torch.cuda.mem_get_info(dev)
            if size > self.resident_fraction * free:
                return False, (
                    f"host memory, pinned overlapped copies to {dev} ({_gb(size)} > "
                    f"{self.resident_fraction:.0%} of {_gb(free)} free of {_gb(total)})"
                )
            where = f"{_gb(size)} of {_gb(free)} free"
        elif resident:
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"BatchLoader: resident=True on {dev}, but CUDA is not available")
            where = _gb(size)
        else:
            return False, f"host memory ({'pinned overlapped copies to ' if dev.type == 'cuda' else ''}{dev})"
        self._data = (_copy_to(images, dev), _copy_to(labels, dev))
        return True, f"resident on {dev} ({where})"

    @property
    def num_samples(self) -> int:
        """Samples per epoch (2N with ``flip_double``)."""
        return len(self.split) * (2 if self.flip_double else 1)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Epoch 0 (``iter_epoch`` for the others)."""
        return self.iter_epoch(0)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """Virtual sample indices of each batch of ``epoch`` (>= N means mirrored with ``flip_double``)."""
        n, b = self.num_samples, self.batch_size
        return batch_order(n, b, seed=self.seed, epoch=epoch, shuffle=self.shuffle, drop_last=self.drop_last)

    def _buffer(self, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._buffers:  # images (B, 3, H, W), labels (B,), mirror mask (B,)
            b, shape = self.batch_size, (self.batch_size, *self.split.images.shape[1:])
            kinds = ((shape, torch.uint8), (b, torch.int64), (b, torch.bool))
            self._buffers = [
                tuple(torch.empty(n, dtype=dt).pin_memory() for n, dt in kinds) for _ in range(2)
            ]
        return self._buffers[slot]

    def _gather(
        self, virtual: np.ndarray, slot: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Host path: images, labels and mirror mask of one batch on the CPU (pinned for CUDA)."""
        n = len(self.split)
        idx = torch.from_numpy(virtual % n if self.flip_double else virtual)  # (B,)
        mirror = torch.from_numpy(virtual >= n) if self.flip_double else None  # (B,)
        if not self._pinned:
            return self.split.images.index_select(0, idx), self.split.labels.index_select(0, idx), mirror
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the copy out of this buffer (two batches ago) has finished
        bx, by, bm = self._buffer(slot)
        x, y = bx[: len(idx)], by[: len(idx)]
        torch.index_select(self.split.images, 0, idx, out=x)
        torch.index_select(self.split.labels, 0, idx, out=y)
        if mirror is not None:
            mirror = bm[: len(idx)].copy_(mirror)
        return x, y, mirror

    def _deliver(self, x: torch.Tensor, y: torch.Tensor, mirror: torch.Tensor | None, slot: int):
        if x.device != self.device:
            x, y, mirror = (
                None if t is None else t.to(self.device, non_blocking=self._pinned) for t in (x, y, mirror)
            )
            if self._pinned:
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(self.device))  # after the copies just queued
                self._events[slot] = event
        if mirror is not None:
            x = hflip_where(x, mirror)
        return x, y

    def _epoch_on_device(self, batches: list[np.ndarray]):
        """Device path: the epoch's indices uploaded once; returns k -> (images, labels, mirror or
        None) of batch k on the data's device (index and mask are views: no copy, no sync)."""
        images, labels = self._data
        n = len(self.split)
        bounds = np.cumsum([0] + [len(b) for b in batches]).tolist()
        virtual = small_to_device(torch.from_numpy(np.concatenate(batches)), images.device)  # (sum B,)
        idx = torch.remainder(virtual, n) if self.flip_double else virtual
        mirror = virtual >= n if self.flip_double else None

        def gather(k: int, slot: int = 0):
            i = idx[bounds[k] : bounds[k + 1]]  # (B,)
            m = None if mirror is None else mirror[bounds[k] : bounds[k + 1]]
            return images.index_select(0, i), labels.index_select(0, i), m

        return gather

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch`` from batch ``start_batch`` on (mid-epoch resumption)."""
        batches = self.batch_indices(epoch)[start_batch:]
        if not batches:
            return
        if self.resident:
            gather = self._epoch_on_device(batches)
            threaded = self.prefetch and self._data[0].device.type == "cpu"  # a host gather to overlap
        else:
            gather = lambda k, slot: self._gather(batches[k], slot)  # noqa: E731
            threaded = self.prefetch
        if not threaded:
            for k in range(len(batches)):
                yield self._deliver(*gather(k, k % 2), k % 2)
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gmsop-loader")
        try:
            future = pool.submit(gather, 0, 0)
            for k in range(len(batches)):
                x, y, mirror = future.result()
                if k + 1 < len(batches):
                    future = pool.submit(gather, k + 1, (k + 1) % 2)
                yield self._deliver(x, y, mirror, k % 2)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _gb(nbytes: int) -> str:
    """15.7 GB, 614.4 MB (decimal units, as ``nvidia-smi`` and disk sizes are quoted)."""
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def _copy_to(t: torch.Tensor, device: torch.device, chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """``t`` on ``device``, copied in slices of about ``chunk_bytes``, so a memmapped split is never
    materialised whole in host memory."""
    if t.device == device:
        return t
    out = torch.empty(t.shape, dtype=t.dtype, device=device)
    row_bytes = int(np.prod(t.shape[1:])) * t.element_size()
    per = max(1, chunk_bytes // max(1, row_bytes))
    for start in range(0, t.shape[0], per):
        out[start : start + per].copy_(t[start : start + per])
    return out
