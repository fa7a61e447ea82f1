"""Images per second the data path delivers: loader + training augmentation, no model.

Why: a model's training throughput is only meaningful if the input pipeline is not the limit.
``measure_loader_throughput`` runs the exact training path (``BatchLoader`` over the memmapped
split, then ``BatchTransform`` with the dataset's augmentation) for a fixed wall-clock time and
reports images per second, to be compared with the model's training images per second.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from gmsop.data.augment import BatchTransform, epoch_generator
from gmsop.data.base import Dataset
from gmsop.data.loader import BatchLoader

__all__ = ["measure_loader_throughput"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_loader_throughput(
    dataset: Dataset,
    batch_size: int = 256,
    seconds: float = 5.0,
    device: str | torch.device = "cpu",
    warmup_batches: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Training-path images/s over ``seconds`` after ``warmup_batches`` (epochs repeat as needed)."""
    if warmup_batches < 1:
        raise ValueError(f"measure_loader_throughput: warmup_batches must be >= 1, got {warmup_batches}")
    device = torch.device(device)
    loader = BatchLoader(
        dataset.train, batch_size, shuffle=True, seed=seed, drop_last=True, device=device,
        flip_double=dataset.augment.flip_double,
    )
    transform = BatchTransform.for_dataset(dataset, train=True)
    images, batches, epoch = 0, 0, 0
    start = None
    while True:
        gen = epoch_generator(seed, epoch, device="cpu")
        for x, _ in loader.iter_epoch(epoch):
            out = transform(x, gen)  # (B, 3, h, w) float32
            batches += 1
            if batches == warmup_batches:
                _sync(device)
                start = time.perf_counter()
            elif start is not None:
                images += out.shape[0]
                if time.perf_counter() - start >= seconds:
                    _sync(device)
                    elapsed = time.perf_counter() - start
                    return {
                        "images_per_s": images / elapsed,
                        "images": images,
                        "batches": batches - warmup_batches,
                        "seconds": elapsed,
                        "batch_size": batch_size,
                        "input_size": list(out.shape[1:]),
                        "device": str(device),
                    }
        epoch += 1
