"""``digits``: scikit-learn's bundled 8x8 handwritten digits, a small real dataset with no download.

The 1,797 images (0..16) are rescaled to 0..255, upsampled bilinearly to ``size``, replicated to 3
channels and split stratified by ``split_seed``. No flip by default (a mirrored 2 is not a 2);
preset ``shift`` pads by size // 8 and random-crops back.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gmsop.data._checks import require_float, require_int
from gmsop.data.base import AugmentSpec, Dataset, Split
from gmsop.data.registry import augment_spec, register_augment_presets, register_dataset, register_train_size
from gmsop.data.stats import channel_mean_std


@register_augment_presets("digits")
def _augment_presets(size: int, **options) -> dict[str, AugmentSpec]:
    return {"none": AugmentSpec(), "shift": AugmentSpec(pad=max(1, int(size) // 8))}


@register_dataset("digits")
def digits(
    root: Path | None = None,
    size: int = 32,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    augment: str | AugmentSpec | dict | None = "none",
) -> Dataset:
    """scikit-learn digits as a 3-channel ``size`` x ``size`` dataset. ``root`` is ignored."""
    from sklearn.datasets import load_digits  # sklearn is slow to import: only when used
    from sklearn.model_selection import train_test_split

    name = "digits"
    size = require_int(name, "size", size, 8)
    val_fraction = require_float(name, "val_fraction", val_fraction, 0.05, 0.5)
    split_seed = require_int(name, "split_seed", split_seed, 0)
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # (N, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # (N, 1, S, S)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous().numpy()  # (N, 3, S, S)
    y = bunch.target.astype(np.int64)
    idx_train, idx_val = train_test_split(
        np.arange(len(y)), test_size=val_fraction, stratify=y, random_state=split_seed
    )
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
    mean, std = channel_mean_std(x[idx_train])
    source = "sklearn.datasets.load_digits"
    return Dataset(
        name=name,
        num_classes=10,
        train=Split(torch.from_numpy(x[idx_train]), torch.from_numpy(y[idx_train]), source=source + "/train"),
        val=Split(torch.from_numpy(x[idx_val]), torch.from_numpy(y[idx_val]), source=source + "/val"),
        mean=mean,
        std=std,
        augment=augment_spec(name, {"size": size, "augment": augment}),
        classes=tuple(str(i) for i in range(10)),
        info={"source": source, "size": size, "val_fraction": val_fraction, "split_seed": split_seed},
    )


@register_train_size("digits")
def _digits_train_size(root, val_fraction: float = 0.2, **_) -> int:
    n = 1797  # sklearn's load_digits; train_test_split puts ceil(fraction * n) in the test part
    return n - math.ceil(float(val_fraction) * n)
