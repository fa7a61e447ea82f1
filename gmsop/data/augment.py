"""Batched augmentation on the training device: flips, (pad +) random crops, centre crops, normalise.

Every random choice is one (B,) draw per uint8 batch from a ``torch.Generator`` (a generator on
the data's device draws there: on CUDA another stream than the CPU's, still a pure function of
seed, epoch and stream). Geometric ops run on uint8; ``normalize`` converts to float32 last.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gmsop.data.base import AugmentSpec

Fill = float | Sequence[float] | torch.Tensor  # a padding value: scalar or one per channel
Size = int | tuple[int, int]  # (h, w), an int for a square


def epoch_generator(
    seed: int, epoch: int, stream: int = 1, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator that is a pure function of (seed, epoch, stream), so resumed runs redraw the same
    (augmentation uses stream 1, evaluation crops stream 2)."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


#: device types whose copies from the host go through pinned memory (a module attribute for tests)
_PINNED_COPY_TYPES = frozenset({"cuda"})


def small_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor ``t`` (random draws, batch indices) on ``device`` without blocking the host:
    CPU to CUDA goes pinned and ``non_blocking``."""
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type in _PINNED_COPY_TYPES:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _channel_constant(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A (1, C, 1, 1) per-channel constant; a tensor of this dtype and device is only viewed."""
    if isinstance(value, torch.Tensor) and value.dtype == dtype and value.device == device:
        return value.view(1, -1, 1, 1)
    return torch.as_tensor(value, device=device).to(dtype).view(1, -1, 1, 1)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """(x - mean) / std per channel (0-255 scale), as float32; ``std=None`` only subtracts the mean
    (what the released code does for downsampled ImageNet)."""
    out = x.to(torch.float32)  # (B, C, H, W), a new tensor when x is uint8
    if out.data_ptr() == x.data_ptr():
        out = out.clone()  # float input: never modify the caller's tensor
    out.sub_(_channel_constant(mean, torch.float32, x.device))
    if std is not None:
        out.div_(_channel_constant(std, torch.float32, x.device))
    return out


def hflip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples where ``mask`` (B,) is True."""
    return torch.where(small_to_device(mask, x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample independently with probability ``p``."""
    mask = torch.rand(x.shape[0], generator=generator, device=_gen_device(generator)) < p  # (B,)
    return hflip_where(x, mask)


def pad_fill(x: torch.Tensor, pad: int, fill: Fill = 0) -> torch.Tensor:
    """Pad H and W by ``pad`` pixels of ``fill`` (a scalar or one value per channel)."""
    if pad == 0:
        return x
    b, c, h, w = x.shape
    fill_t = _channel_constant(fill, x.dtype, x.device)  # (1, C or 1, 1, 1)
    out = fill_t.expand(b, c, h + 2 * pad, w + 2 * pad).clone()  # (B, C, H+2p, W+2p)
    out[:, :, pad : pad + h, pad : pad + w] = x
    return out


def crop_at(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: Size, pad: int = 0, fill: Fill = 0
) -> torch.Tensor:
    """Per-sample crops: sample b gets rows top[b].. and columns left[b].. of its image padded by
    ``pad`` pixels of ``fill`` (offsets range over 0 .. H + 2 pad - h)."""
    sh, sw = (size, size) if isinstance(size, int) else size
    xp = pad_fill(x, pad, fill)  # (B, C, H+2p, W+2p)
    windows = xp.unfold(2, sh, 1).unfold(3, sw, 1)  # (B, C, H+2p-sh+1, W+2p-sw+1, sh, sw) view
    rows, cols = small_to_device(top, x.device), small_to_device(left, x.device)
    return windows[torch.arange(x.shape[0], device=x.device), :, rows, cols]  # (B, C, sh, sw)


def random_crop(
    x: torch.Tensor, size: Size, generator: torch.Generator | None = None, pad: int = 0, fill: Fill = 0
) -> torch.Tensor:
    """A uniformly placed crop of ``size`` (int: square) from each sample padded by ``pad`` pixels."""
    b, _, h, w = x.shape
    sh, sw = (size, size) if isinstance(size, int) else size
    if sh > h + 2 * pad or sw > w + 2 * pad:
        raise ValueError(f"random_crop: size {sh}x{sw} does not fit {h}x{w} images padded by {pad}")
    dev = _gen_device(generator)
    top = torch.randint(0, h + 2 * pad - sh + 1, (b,), generator=generator, device=dev)  # (B,)
    left = torch.randint(0, w + 2 * pad - sw + 1, (b,), generator=generator, device=dev)  # (B,)
    return crop_at(x, top, left, (sh, sw), pad, fill)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of every sample (a view)."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"center_crop: size {size} is larger than {h}x{w} images")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


class BatchTransform:
    """uint8 batch -> augmented, normalised float32 batch, as an ``AugmentSpec`` prescribes.

    Training: random flip, then pad + random crop; evaluation: the same pad + crop with
    ``eval_pad_crop``, else a centre crop of ``eval_crop``. ``divide_std=False`` subtracts the
    mean only. ``fill`` (padding, uint8 scale) defaults to the rounded mean, so padding is ~0
    after normalisation. ``flip_double`` is the loader's job.
    """

    def __init__(
        self,
        spec: AugmentSpec,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        divide_std: bool = True,
        fill: Sequence[float] | None = None,
    ) -> None:
        self.spec, self.train = spec, train
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std) if divide_std else None
        self.fill = tuple(float(round(f)) for f in (fill if fill is not None else self.mean))
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = {}

    def constants(self, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(mean, std or None, fill) on ``device``, built once per device (no copy per step)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # the key a tensor's .device gives
        if device not in self._constants:

            def channels(values, dtype=torch.float32):
                return torch.tensor(values, dtype=torch.float32).to(dtype).view(1, -1, 1, 1).to(device)

            std = None if self.std is None else channels(self.std)
            self._constants[device] = (channels(self.mean), std, channels(self.fill, torch.uint8))
        return self._constants[device]

    @classmethod
    def for_dataset(cls, dataset, train: bool, divide_std: bool = True) -> BatchTransform:
        """The transform ``dataset.augment`` prescribes, with the dataset's statistics."""
        return cls(dataset.augment, dataset.mean, dataset.std, train, divide_std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(
                f"BatchTransform expects a uint8 (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}"
            )
        s, hw = self.spec, (x.shape[-2], x.shape[-1])
        mean, std, fill = self.constants(x.device)
        if self.train or s.eval_pad_crop:
            if self.train and s.flip:
                x = random_hflip(x, generator)
            size = (s.train_crop, s.train_crop) if s.train_crop is not None else hw
            if s.pad or size != hw:
                x = random_crop(x, size, generator, s.pad, fill)
        elif s.eval_crop is not None:
            x = center_crop(x, s.eval_crop)
        return normalize(x, mean, std).contiguous()
