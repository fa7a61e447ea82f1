"""The dataset interface every gmsop dataset returns: ``Split``, ``AugmentSpec`` and ``Dataset``.

Images are one uint8 array (N, 3, H, W), in memory or memory-mapped; float conversion and
augmentation happen per batch on the device. Constructors raise ``ValueError`` naming the bad value
and its file (``Split.source``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def check_labels(labels: np.ndarray | torch.Tensor, num_classes: int, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless every label is in [0, num_classes)."""
    arr = np.asarray(labels)
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        raise ValueError(
            f"{source}: label {int(arr[bad[0]])} at index {int(bad[0])} is outside [0, {num_classes}) "
            f"(labels span {int(arr.min())}..{int(arr.max())})"
        )


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, 3, H, W) in R, G, B (possibly a copy-on-write memmap), int64
    0-based labels (N,) and ``source``, the file or cache path named in errors."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str = "<memory>"

    def __post_init__(self) -> None:
        im, lb = self.images, self.labels
        if not isinstance(im, torch.Tensor) or not isinstance(lb, torch.Tensor):
            raise ValueError(
                f"{self.source}: images and labels must be torch tensors, got "
                f"{type(im).__name__} and {type(lb).__name__}"
            )
        if im.dtype != torch.uint8:
            raise ValueError(f"{self.source}: images must be uint8, got {im.dtype}")
        if im.dim() != 4 or im.shape[1] != 3:
            raise ValueError(f"{self.source}: images must have shape (N, 3, H, W), got {tuple(im.shape)}")
        if im.shape[2] < 1 or im.shape[3] < 1:
            raise ValueError(f"{self.source}: empty image size {tuple(im.shape[2:])}")
        if lb.dtype != torch.int64:
            raise ValueError(f"{self.source}: labels must be int64, got {lb.dtype}")
        if lb.dim() != 1 or lb.shape[0] != im.shape[0]:
            raise ValueError(
                f"{self.source}: labels must have shape ({im.shape[0]},) to match the images, "
                f"got {tuple(lb.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) as stored, before augmentation."""
        return int(self.images.shape[2]), int(self.images.shape[3])


@dataclass(frozen=True)
class AugmentSpec:
    """The augmentation a dataset is trained and evaluated with (see method-facts.md, Training).

    Training: mirror copies (``flip_double``: an epoch of 2N samples, Table 3's star rows; done by
    the loader), random horizontal flip (``flip``), padding by ``pad`` and a random square crop of
    ``train_crop`` (None: the stored size). Evaluation: a centre crop of ``eval_crop`` (None: the
    whole image), or with ``eval_pad_crop`` the training pad + random crop (Table 3's star rows).
    """

    flip: bool = False
    pad: int = 0
    train_crop: int | None = None
    eval_crop: int | None = None
    flip_double: bool = False
    eval_pad_crop: bool = False

    def __post_init__(self) -> None:
        for name in ("flip", "flip_double", "eval_pad_crop"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AugmentSpec.{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.pad, int) or isinstance(self.pad, bool) or self.pad < 0:
            raise ValueError(f"AugmentSpec.pad must be an int >= 0, got {self.pad!r}")
        for name in ("train_crop", "eval_crop"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"AugmentSpec.{name} must be None or an int >= 1, got {v!r}")

    def output_size(self, image_size: tuple[int, int], train: bool) -> tuple[int, int]:
        """(H, W) of a batch after this augmentation, for stored images of ``image_size``."""
        h, w = image_size
        if train or self.eval_pad_crop:
            crop = self.train_crop
            if crop is not None and (crop > h + 2 * self.pad or crop > w + 2 * self.pad):
                raise ValueError(
                    f"AugmentSpec: train_crop={crop} does not fit images of {h}x{w} padded by {self.pad}"
                )
            return (crop, crop) if crop is not None else (h, w)
        if self.eval_crop is not None:
            if self.eval_crop > h or self.eval_crop > w:
                raise ValueError(f"AugmentSpec: eval_crop={self.eval_crop} is larger than images of {h}x{w}")
            return self.eval_crop, self.eval_crop
        return h, w


def resolve_augment(
    value: str | AugmentSpec | Mapping[str, Any] | None,
    presets: Mapping[str, AugmentSpec],
    default: str,
    dataset: str,
) -> AugmentSpec:
    """A preset name, an ``AugmentSpec`` or a mapping of overrides of the default preset (a config's
    ``augment: {pad: 4}``) as an ``AugmentSpec``."""
    if value is None:
        return presets[default]
    if isinstance(value, AugmentSpec):
        return value
    if isinstance(value, str):
        if value not in presets:
            raise ValueError(
                f"{dataset}: unknown augment preset {value!r}; choose one of: {', '.join(sorted(presets))}"
            )
        return presets[value]
    if isinstance(value, Mapping):
        fields = {f.name for f in dataclasses.fields(AugmentSpec)}
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(
                f"{dataset}: unknown augment field(s) {unknown}; valid fields: {', '.join(sorted(fields))}"
            )
        return dataclasses.replace(presets[default], **dict(value))
    raise ValueError(
        f"{dataset}: augment must be a preset name, an AugmentSpec or a mapping, got {type(value).__name__}"
    )


def _channel_triple(name: str, value: Any) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except TypeError:
        raise ValueError(f"Dataset.{name} must be 3 numbers, got {value!r}") from None
    if len(out) != 3 or not all(np.isfinite(out)):
        raise ValueError(f"Dataset.{name} must be 3 finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Dataset:
    """A classification dataset as the engine consumes it: two splits of one image size, the
    training images' per-channel mean and std (0-255 scale), the paper's augmentation, class names
    when the source has them and free-form provenance ``info`` (source, cache, notes)."""

    name: str
    num_classes: int
    train: Split
    val: Split
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    classes: tuple[str, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.num_classes
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise ValueError(f"{self.name}: num_classes must be an int >= 2, got {k!r}")
        if not isinstance(self.train, Split) or not isinstance(self.val, Split):
            raise ValueError(f"{self.name}: train and val must be Splits")
        if self.train.image_size != self.val.image_size:
            raise ValueError(
                f"{self.name}: train images are {self.train.image_size} but val images are "
                f"{self.val.image_size} ({self.train.source} vs {self.val.source})"
            )
        object.__setattr__(self, "mean", _channel_triple("mean", self.mean))
        object.__setattr__(self, "std", _channel_triple("std", self.std))
        if min(self.std) <= 0:
            raise ValueError(f"{self.name}: std must be positive, got {self.std}")
        if not isinstance(self.augment, AugmentSpec):
            kind = type(self.augment).__name__
            raise ValueError(f"{self.name}: augment must be an AugmentSpec, got {kind}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if len(self.classes) != k:
                raise ValueError(f"{self.name}: {len(self.classes)} class names for num_classes={k}")
        for split in (self.train, self.val):
            check_labels(split.labels, k, split.source)
        train_size = self.augment.output_size(self.image_size, train=True)
        eval_size = self.augment.output_size(self.image_size, train=False)
        if train_size != eval_size:
            raise ValueError(
                f"{self.name}: augmentation gives {train_size} at training but {eval_size} at "
                f"evaluation ({self.augment}); the model must see one input size"
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) as stored."""
        return self.train.image_size

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the model sees after augmentation (the same at training and evaluation)."""
        return self.augment.output_size(self.image_size, train=True)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (what ``gmsop data info`` prints)."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "train": {"n": len(self.train), "shape": [3, *self.image_size], "source": self.train.source},
            "val": {"n": len(self.val), "shape": [3, *self.image_size], "source": self.val.source},
            "input_size": list(self.input_size),
            "mean": [round(m, 4) for m in self.mean],
            "std": [round(s, 4) for s in self.std],
            "augment": dataclasses.asdict(self.augment),
            "info": self.info,
        }
