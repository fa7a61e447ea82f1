"""The engine's view of a dataset: normalised float batches on the device, per epoch.

Built from ``gmsop.data``: ``BatchLoader`` (uint8 batches on the device, order a pure function of
(seed, epoch)) and ``BatchTransform`` (the dataset's ``AugmentSpec``: flips, pad + crop, centre
crop, then normalisation). Augmentation draws from ``epoch_generator(seed, epoch, stream)``,
again a pure function of (seed, epoch), so nothing about the data carries over from one epoch
to the next. That is what makes resuming exact without saving any data-side state: the resume
checkpoint only needs the global RNG streams (gate noise, dropout), which ``env`` captures.

Random draws happen on the data's device: the generators are ``epoch_generator(..., device=
self.device)``, so a CUDA run draws flips and crop offsets on the GPU and no step waits for a
host-to-device copy. On the CPU this is exactly the generator (and the numbers) of before. On
CUDA the stream is the CUDA generator's, not the CPU's: a CUDA run augments differently from a
CPU run with the same seed (the two are not bit-comparable anyway: convolutions differ), but the
generator is still a pure function of (seed, epoch, stream), so resuming stays exact on either.

Placement (``resident``, see ``gmsop.data.loader``): ``"auto"`` keeps a split on the CUDA
device when it takes at most half of the free device memory when the pipeline is built (before
the model moves there), and gathers batches there; otherwise, and always on the CPU, batches are
gathered in host memory and copied (pinned, overlapped). ``placement`` says what was chosen, in
one line for the run's log, e.g. "train: resident on cuda:0 (15.7 GB of 139.0 GB free); val:
resident on cuda:0 (0.6 GB of 123.3 GB free)". The batches are the same either way.

Training drops the last incomplete batch: BatchNorm needs more than one sample, and the
released code's balance-loss weight alpha/B assumes a constant B.

Normalisation: ``input_norm="mean"`` subtracts the per-channel training mean only (the released
code on downsampled ImageNet, method-facts.md "Training"); ``"mean_std"`` also divides by the
per-channel std.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["DataPipeline", "TRAIN_STREAM", "EVAL_STREAM"]

TRAIN_STREAM, EVAL_STREAM = 1, 2  # epoch_generator streams (see gmsop.data.augment)


class DataPipeline:
    """Training and validation batches of one dataset for one run."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int,
        device: torch.device,
        max_train_batches: int | None = None,
        input_norm: str = "mean",
        resident: bool | str = "auto",
    ):
        from gmsop.data import BatchLoader, BatchTransform

        if input_norm not in ("mean", "mean_std"):
            raise ValueError(f"input_norm must be 'mean' or 'mean_std', got {input_norm!r}")
        self.dataset, self.seed, self.device, self.input_norm = dataset, seed, device, input_norm
        aug = dataset.augment
        n_train = len(dataset.train) * (2 if aug.flip_double else 1)
        if batch_size > n_train:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set of {dataset.name} "
                f"({n_train} samples per epoch); every epoch would be empty"
            )
        # train first: with "auto", the validation split is judged against what is left
        self.train_loader = BatchLoader(
            dataset.train,
            batch_size,
            shuffle=True,
            seed=seed,
            drop_last=True,
            device=device,
            flip_double=aug.flip_double,
            resident=resident,
        )
        self.val_loader = BatchLoader(
            dataset.val, batch_size, shuffle=False, drop_last=False, device=device, resident=resident
        )
        self.placement = f"train: {self.train_loader.placement}; val: {self.val_loader.placement}"
        divide = input_norm == "mean_std"
        self.train_tf = BatchTransform.for_dataset(dataset, train=True, divide_std=divide)
        self.val_tf = BatchTransform.for_dataset(dataset, train=False, divide_std=divide)
        self.max_train_batches = max_train_batches
        full = len(self.train_loader)
        self.train_steps = min(full, max_train_batches) if max_train_batches else full

    @classmethod
    def from_config(cls, cfg, device: torch.device) -> DataPipeline:
        from gmsop.data import get_dataset

        ds = get_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
        return cls(
            ds, cfg.batch_size, cfg.seed, device, cfg.max_train_batches, cfg.input_norm, resident="auto"
        )  # on the device when it fits there (BatchLoader), else pinned copies

    @property
    def num_classes(self) -> int:
        return int(self.dataset.num_classes)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.dataset.input_size)

    @property
    def train_size(self) -> int:
        return len(self.dataset.train)

    @property
    def val_size(self) -> int:
        return len(self.dataset.val)

    @property
    def augment_summary(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.dataset.augment), "input_norm": self.input_norm}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Augmented, normalised (x, y) of ``epoch`` on the device (at most ``train_steps``)."""
        from gmsop.data import epoch_generator

        g = epoch_generator(self.seed, epoch, stream=TRAIN_STREAM, device=self.device)
        with contextlib.closing(self.train_loader.iter_epoch(epoch)) as batches:
            for step, (x, y) in enumerate(batches, start=1):
                yield self.train_tf(x, g), y
                if step >= self.train_steps:
                    break

    def val_batches(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Evaluation batches in stored order (``epoch`` only matters for eval-time random crops)."""
        from gmsop.data import epoch_generator

        g = epoch_generator(self.seed, epoch, stream=EVAL_STREAM, device=self.device)
        with contextlib.closing(self.val_loader.iter_epoch(0)) as batches:
            for x, y in batches:
                yield self.val_tf(x, g), y
