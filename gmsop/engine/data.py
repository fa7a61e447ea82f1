"""The engine's view of a dataset: normalised float batches on the device, per epoch.

Batch order and augmentation (drawn on the data's device) are functions of (seed, epoch): a resume
needs no data-side state. Training drops the last incomplete batch (BatchNorm; alpha/B assumes a
constant B). ``input_norm``: "mean" subtracts the channel mean, "mean_std" also divides by the std.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from gmsop.data import BatchLoader, BatchTransform, epoch_generator

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
        self.dataset, self.seed, self.device, self.input_norm = dataset, seed, device, input_norm
        aug = dataset.augment
        n_train = len(dataset.train) * (2 if aug.flip_double else 1)
        if batch_size > n_train:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set of {dataset.name} "
                f"({n_train} samples per epoch); every epoch would be empty"
            )
        # train first: with "auto", the validation split is judged against what is left
        common = {"device": device, "resident": resident}
        self.train_loader = BatchLoader(
            dataset.train, batch_size, seed=seed, drop_last=True, flip_double=aug.flip_double, **common
        )
        self.val_loader = BatchLoader(dataset.val, batch_size, shuffle=False, **common)
        self.placement = f"train: {self.train_loader.placement}; val: {self.val_loader.placement}"
        divide = input_norm == "mean_std"
        self.train_tf = BatchTransform.for_dataset(dataset, train=True, divide_std=divide)
        self.val_tf = BatchTransform.for_dataset(dataset, train=False, divide_std=divide)
        self.train_steps = min(len(self.train_loader), max_train_batches or len(self.train_loader))
        self.num_classes = int(dataset.num_classes)
        self.input_size = tuple(int(v) for v in dataset.input_size)
        self.train_size, self.val_size = len(dataset.train), len(dataset.val)
        self.augment_summary: dict[str, Any] = {**dataclasses.asdict(aug), "input_norm": input_norm}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Augmented, normalised (x, y) of ``epoch`` on the device (at most ``train_steps``)."""
        g = epoch_generator(self.seed, epoch, stream=TRAIN_STREAM, device=self.device)
        with contextlib.closing(self.train_loader.iter_epoch(epoch)) as batches:
            for step, (x, y) in enumerate(batches, start=1):
                yield self.train_tf(x, g), y
                if step >= self.train_steps:
                    break

    def val_batches(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Evaluation batches in stored order (``epoch`` only matters for eval-time random crops)."""
        g = epoch_generator(self.seed, epoch, stream=EVAL_STREAM, device=self.device)
        with contextlib.closing(self.val_loader.iter_epoch(0)) as batches:
            for x, y in batches:
                yield self.val_tf(x, g), y
