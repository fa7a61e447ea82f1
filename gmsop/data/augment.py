"""Batched augmentation on the training device: flips, (pad +) random crops, centre crops, normalise.

Why batched: the loader hands over whole uint8 batches (B, 3, H, W) already on the device, so
augmentation is a handful of tensor ops per batch instead of a Python loop per image. Every
random choice is one draw per batch from a ``torch.Generator``:

* flips: a (B,) Bernoulli mask, applied with ``torch.where`` (no per-sample branch);
* crops: (B,) row and column offsets into the (padded) image; all windows are one strided view
  (``unfold`` along H and W, no copy) and a single advanced index picks each sample's window.
  Padding uses a per-channel ``fill`` value.

Random numbers are drawn on the generator's device. Nothing in a training step may wait for
the GPU (a blocking host-to-device copy is a device synchronisation, which would undo the
loader's overlap), hence:

* a generator on the data's device (what ``gmsop.engine.data.DataPipeline`` uses:
  ``epoch_generator(..., device=<the data's device>)``) draws where the data is: no copy.
  On CUDA this is the Philox stream of a CUDA generator, which differs from the CPU stream
  for the same seed: CUDA runs augment differently from CPU runs (they are not bit-comparable
  anyway), but the generator is still a pure function of (seed, epoch, stream), so a resumed
  run redraws exactly the same on either device;
* a CPU generator with data on a CUDA device (callers of the
  functions below) draws on the CPU, as before, and the (B,) draws travel through pinned
  memory with a non-blocking copy (``small_to_device``): the same augmentation as on the CPU,
  without a sync;
* ``BatchTransform`` builds its constants (mean, std, padding fill) once per device and
  reuses them (``BatchTransform.constants``), instead of copying Python tuples to the device
  on every call.
Geometric ops run on uint8 (4x less memory traffic than float); ``normalize`` converts to
float32 last. ``BatchTransform`` chains them as an ``AugmentSpec`` says.

The default padding fill of ``BatchTransform`` is the rounded dataset mean, so that after mean
subtraction the padding is ~0, which is what zero-padding a mean-subtracted image gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gmsop.data.base import AugmentSpec

__all__ = [
    "epoch_generator",
    "to_float",
    "normalize",
    "hflip_where",
    "small_to_device",
    "random_hflip",
    "pad_fill",
    "crop_at",
    "random_crop",
    "center_crop",
    "BatchTransform",
]


def epoch_generator(
    seed: int, epoch: int, stream: int = 1, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator that is a pure function of (seed, epoch, stream): resumed runs redraw the same.

    ``stream`` separates independent uses (the loader's permutation uses numpy's
    ``default_rng([seed, epoch])``; augmentation takes stream 1, evaluation crops stream 2).
    """
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


#: Device types whose host-to-device copies of random draws go through pinned memory
#: (non-blocking); a copy from pageable memory would block. A module attribute so that a test
#: can check the path on the CPU with a stand-in device.
_PINNED_COPY_TYPES = frozenset({"cuda"})


def small_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor ``t`` (random draws, batch indices) on ``device`` without blocking the host.

    Same device: ``t`` itself. From the CPU to a CUDA device: pinned, then copied with
    ``non_blocking=True`` (the caching host allocator keeps the pinned block alive until the
    copy has run). Otherwise a plain ``.to``.
    """
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type in _PINNED_COPY_TYPES:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _channel_constant(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A (1, C, 1, 1) per-channel constant; a tensor already of this dtype and device is only
    viewed (no copy, no new allocation), anything else is converted."""
    if isinstance(value, torch.Tensor) and value.dtype == dtype and value.device == device:
        return value.view(1, -1, 1, 1)
    return torch.as_tensor(value, device=device).to(dtype).view(1, -1, 1, 1)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 on the 0-255 scale (no rescaling)."""
    return x.to(torch.float32)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """(x - mean) / std per channel, as float32; ``std=None`` only subtracts the mean.

    ``mean`` and ``std`` are on the 0-255 scale, like the uint8 input. Mean subtraction alone is
    what the released code does for downsampled ImageNet (method-facts.md, Training). Pass
    float32 tensors on ``x``'s device (``BatchTransform.constants``) to avoid building and
    copying them on every call.
    """
    out = x.to(torch.float32)  # (B, C, H, W), a new tensor when x is uint8
    if out.data_ptr() == x.data_ptr():
        out = out.clone()  # float input: never modify the caller's tensor
    out.sub_(_channel_constant(mean, torch.float32, x.device))
    if std is not None:
        out.div_(_channel_constant(std, torch.float32, x.device))
    return out


def hflip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples where ``mask`` (B,) is True; others unchanged.

    ``mask`` on another device than ``x`` is moved without blocking (``small_to_device``).
    """
    return torch.where(small_to_device(mask, x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample independently with probability ``p``."""
    mask = torch.rand(x.shape[0], generator=generator, device=_gen_device(generator)) < p  # (B,)
    return hflip_where(x, mask)


def pad_fill(x: torch.Tensor, pad: int, fill: float | Sequence[float] | torch.Tensor = 0) -> torch.Tensor:
    """Pad H and W by ``pad`` pixels of ``fill`` (a scalar or one value per channel; a tensor of
    ``x``'s dtype and device is used as it is)."""
    if pad == 0:
        return x
    b, c, h, w = x.shape
    fill_t = _channel_constant(fill, x.dtype, x.device)  # (1, C or 1, 1, 1)
    out = fill_t.expand(b, c, h + 2 * pad, w + 2 * pad).clone()  # (B, C, H+2p, W+2p)
    out[:, :, pad : pad + h, pad : pad + w] = x
    return out


def crop_at(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    size: int | tuple[int, int],
    pad: int = 0,
    fill: float | Sequence[float] | torch.Tensor = 0,
) -> torch.Tensor:
    """Per-sample crops of the image padded by ``pad`` pixels of ``fill``.

    Sample b gets rows top[b] .. top[b]+h-1 and columns left[b] .. left[b]+w-1 of its padded
    image, so offsets range over 0 .. H + 2 pad - h. All windows are a strided view
    (``unfold`` twice, no copy); one advanced index picks each sample's window. Offsets on
    another device than ``x`` are moved without blocking (``small_to_device``).
    """
    b = x.shape[0]
    sh, sw = (size, size) if isinstance(size, int) else size
    xp = pad_fill(x, pad, fill)  # (B, C, H+2p, W+2p)
    windows = xp.unfold(2, sh, 1).unfold(3, sw, 1)  # (B, C, H+2p-sh+1, W+2p-sw+1, sh, sw) view
    rows, cols = small_to_device(top, x.device), small_to_device(left, x.device)
    return windows[torch.arange(b, device=x.device), :, rows, cols]  # (B, C, sh, sw)


def random_crop(
    x: torch.Tensor,
    size: int | tuple[int, int],
    generator: torch.Generator | None = None,
    pad: int = 0,
    fill: float | Sequence[float] | torch.Tensor = 0,
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

    Training: random flip (``spec.flip``), then pad + random crop when ``spec.pad`` or
    ``spec.train_crop`` asks for one. Evaluation: pad + random crop when ``spec.eval_pad_crop``,
    else a centre crop of ``spec.eval_crop`` if set. Then ``normalize``. (``spec.flip_double``
    is the loader's job: it yields each image and its mirror.)

    Args:
        spec: the dataset's augmentation.
        mean, std: per-channel statistics on the 0-255 scale (``Dataset.mean`` / ``.std``).
        train: training or evaluation behaviour.
        divide_std: False subtracts the mean only (the released code on downsampled ImageNet).
        fill: padding value per channel on the uint8 scale; default the rounded mean.

    The constants (mean, std as float32, fill as uint8, each (1, C, 1, 1)) are built once per
    device on first use and reused (``constants``): building them per call meant two to three
    host-to-device copies, each a device synchronisation, on every training step.
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
        """(mean, std or None, fill) on ``device``: built on the first call per device, then the
        same tensors (one copy per transform and device for the whole run, none per step)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # the key a tensor's .device gives
        cached = self._constants.get(device)
        if cached is None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
            std = (
                None
                if self.std is None
                else torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
            )
            fill = torch.tensor(self.fill, dtype=torch.float32).to(torch.uint8).view(1, -1, 1, 1).to(device)
            cached = self._constants[device] = (mean, std, fill)
        return cached

    @classmethod
    def for_dataset(cls, dataset, train: bool, divide_std: bool = True) -> BatchTransform:
        """The transform ``dataset.augment`` prescribes, with the dataset's statistics."""
        return cls(dataset.augment, dataset.mean, dataset.std, train, divide_std)

    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return self.spec.output_size(image_size, self.train)

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

    def __repr__(self) -> str:
        return f"BatchTransform({self.spec}, train={self.train}, divide_std={self.std is not None})"
