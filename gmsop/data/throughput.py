"""Images per second the data path delivers (``BatchLoader`` + training ``BatchTransform``, no
model), to compare with a model's training images per second."""

from __future__ import annotations

import time
from typing import Any

import torch

from gmsop.data.augment import BatchTransform, epoch_generator
from gmsop.data.base import Dataset
from gmsop.data.loader import BatchLoader


def time_loader(
    loader: BatchLoader,
    transform: BatchTransform,
    seconds: float,
    warmup_batches: int = 3,
    seed: int = 0,
    epoch: int = 0,
) -> dict[str, Any]:
    """Images/s of ``loader`` + ``transform`` over ``seconds`` after ``warmup_batches``, from
    ``epoch`` on (epochs repeat as needed), drawing on the loader's device as training does."""
    if warmup_batches < 1:
        raise ValueError(f"warmup_batches must be >= 1, got {warmup_batches}")
    device = loader.device
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda device: None
    images, batches, start = 0, 0, None
    while True:
        gen = epoch_generator(seed, epoch, device=device)
        for x, _ in loader.iter_epoch(epoch):
            out = transform(x, gen)  # (B, 3, h, w) float32 on the device
            batches += 1
            if batches == warmup_batches:
                sync(device)
                start = time.perf_counter()
            elif start is not None:
                images += out.shape[0]
                if time.perf_counter() - start >= seconds:
                    sync(device)
                    elapsed = time.perf_counter() - start
                    return {
                        "images_per_s": images / elapsed,
                        "images": images,
                        "batches": batches - warmup_batches,
                        "seconds": elapsed,
                        "batch_size": loader.batch_size,
                        "input_size": list(out.shape[1:]),
                        "device": str(device),
                    }
        epoch += 1


def measure_loader_throughput(
    dataset: Dataset,
    batch_size: int = 256,
    seconds: float = 5.0,
    device: str | torch.device = "cpu",
    warmup_batches: int = 3,
    seed: int = 0,
    resident: bool | str = "auto",
) -> dict[str, Any]:
    """``time_loader`` of the training split and augmentation; ``resident`` as in ``BatchLoader``."""
    kw = dict(seed=seed, drop_last=True, device=device, resident=resident)
    loader = BatchLoader(dataset.train, batch_size, flip_double=dataset.augment.flip_double, **kw)
    return time_loader(loader, BatchTransform.for_dataset(dataset, train=True), seconds, warmup_batches, seed)
