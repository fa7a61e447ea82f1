"""Batched augmentation: flips, crops (with fused padding), normalisation, the spec-driven chain."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from gmsop.data import AugmentSpec, BatchTransform, epoch_generator
from gmsop.data import augment as augment_module
from gmsop.data.augment import (
    center_crop,
    crop_at,
    hflip_where,
    normalize,
    pad_fill,
    random_crop,
    random_hflip,
)


def _batch(b=16, h=8, w=8):
    # each pixel encodes (sample, row, column) so any misplaced pixel is detectable
    n = torch.arange(b).view(b, 1, 1, 1)
    r = torch.arange(h).view(1, 1, h, 1)
    c = torch.arange(w).view(1, 1, 1, w)
    ch = torch.arange(3).view(1, 3, 1, 1)
    return ((n * 13 + r * 8 + c + ch * 64) % 251 + 1).to(torch.uint8).expand(b, 3, h, w).contiguous()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


class TestFlip:
    def test_hflip_where_flips_exactly_the_masked(self):
        x = _batch(4)
        mask = torch.tensor([True, False, True, False])
        out = hflip_where(x, mask)
        assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[2], x[2].flip(-1))
        assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])

    def test_random_hflip_matches_its_mask(self):
        x = _batch(64)
        out = random_hflip(x, _gen(3))
        mask = torch.rand(64, generator=_gen(3)) < 0.5  # the same draw
        assert 10 < int(mask.sum()) < 54
        for i in range(64):
            assert torch.equal(out[i], x[i].flip(-1) if mask[i] else x[i])

    def test_reproducible(self):
        x = _batch(32)
        assert torch.equal(random_hflip(x, _gen(1)), random_hflip(x, _gen(1)))
        assert not torch.equal(random_hflip(x, _gen(1)), random_hflip(x, _gen(2)))


class TestCrop:
    def test_crop_at_matches_slicing(self):
        x = _batch(3, 10, 12)
        top, left = torch.tensor([0, 2, 5]), torch.tensor([1, 0, 6])
        out = crop_at(x, top, left, 5)
        for i in range(3):
            t, lf = int(top[i]), int(left[i])
            assert torch.equal(out[i], x[i, :, t : t + 5, lf : lf + 5])

    def test_crop_outside_takes_fill_per_channel(self):
        x = _batch(2, 6, 6)
        # pad 3: padded offsets (1, 2) and (6, 5) are image offsets (-2, -1) and (3, 2)
        out = crop_at(x, torch.tensor([1, 6]), torch.tensor([2, 5]), 6, pad=3, fill=[10, 20, 30])
        assert out.shape == (2, 3, 6, 6)
        assert torch.equal(out[0, :, 2:, 1:], x[0, :, :4, :5])
        assert (out[0, :, :2] == torch.tensor([10, 20, 30]).view(3, 1, 1)).all()
        assert (out[0, :, :, 0] == torch.tensor([10, 20, 30]).view(3, 1)).all()
        assert torch.equal(out[1, :, :3, :4], x[1, :, 3:, 2:])
        assert (out[1, :, 3:] == torch.tensor([10, 20, 30]).view(3, 1, 1)).all()

    def test_padded_random_crop_stays_inside_padded_image(self):
        x = _batch(200, 8, 8)
        pad, size = 4, 8
        out = random_crop(x, size, _gen(0), pad=pad, fill=0)
        padded = torch.nn.functional.pad(x, (pad,) * 4)  # (B, 3, 16, 16)
        offsets = set()
        for i in range(200):
            # the crop is some window of the zero-padded image
            found = [
                (t, lf)
                for t in range(2 * pad + 1)
                for lf in range(2 * pad + 1)
                if torch.equal(padded[i, :, t : t + size, lf : lf + size], out[i])
            ]
            assert found, f"sample {i} is not a window of its padded image"
            offsets.add(found[0])
        assert len(offsets) > 40  # offsets really vary (81 possible)

    def test_random_crop_without_pad(self):
        x = _batch(50, 10, 10)
        out = random_crop(x, (6, 4), _gen(5))
        assert out.shape == (50, 3, 6, 4)
        # every value of the crop comes from the sample's own image (no fill)
        for i in range(50):
            assert set(out[i].unique().tolist()) <= set(x[i].unique().tolist())

    def test_pad_fill(self):
        x = _batch(2, 3, 3)
        out = pad_fill(x, 2, fill=[1, 2, 3])
        assert out.shape == (2, 3, 7, 7) and torch.equal(out[:, :, 2:5, 2:5], x)
        assert (out[:, 2, 0] == 3).all() and (out[:, 0, :, -1] == 1).all()
        assert pad_fill(x, 0) is x

    def test_too_large(self):
        with pytest.raises(ValueError, match="does not fit"):
            random_crop(_batch(2, 8, 8), 12, _gen(), pad=1)
        with pytest.raises(ValueError, match="larger than"):
            center_crop(_batch(2, 8, 8), 9)

    def test_center_crop(self):
        x = _batch(2, 100, 100)
        assert torch.equal(center_crop(x, 96), x[:, :, 2:98, 2:98])


class TestNormalize:
    def test_values(self):
        x = torch.tensor([[[[0, 255]], [[128, 64]], [[10, 20]]]], dtype=torch.uint8)  # (1, 3, 1, 2)
        out = normalize(x, (100.0, 128.0, 10.0), (50.0, 64.0, 5.0))
        assert out.dtype == torch.float32
        expected = torch.tensor([[[[-2.0, 3.1]], [[0.0, -1.0]], [[0.0, 2.0]]]])
        assert torch.allclose(out, expected)
        assert torch.allclose(
            normalize(x, (100.0, 128.0, 10.0)),
            x.to(torch.float32) - torch.tensor([100.0, 128.0, 10.0]).view(1, 3, 1, 1),
        )


class TestBatchTransform:
    MEAN, STD = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)

    def test_eval_centre_crop_is_deterministic(self):
        tf = BatchTransform(
            AugmentSpec(flip=True, train_crop=6, eval_crop=6), self.MEAN, self.STD, train=False
        )
        x = _batch(4, 8, 8)
        out = tf(x)
        assert out.shape == (4, 3, 6, 6)
        assert torch.allclose(out, normalize(x[:, :, 1:7, 1:7], self.MEAN, self.STD))

    def test_train_flip_and_crop(self):
        spec = AugmentSpec(flip=True, train_crop=96, eval_crop=96)
        tf = BatchTransform(spec, self.MEAN, self.STD, train=True)
        out = tf(_batch(8, 100, 100), _gen(0))
        assert out.shape == (8, 3, 96, 96) and out.dtype == torch.float32 and out.is_contiguous()

    def test_pad_fill_is_the_mean(self):
        tf = BatchTransform(AugmentSpec(pad=4), self.MEAN, self.STD, train=True)
        out = tf(torch.full((64, 3, 8, 8), 255, dtype=torch.uint8), _gen(1))
        values = torch.unique(out.round(decimals=3))
        assert out.shape == (64, 3, 8, 8)
        # padding becomes ~0 after normalisation; image pixels stay (255 - mean) / std
        assert float(out.abs().min()) < 0.01
        assert float(out.max()) == pytest.approx((255 - 100) / 40, abs=1e-4) and len(values) <= 6

    def test_mean_only(self):
        tf = BatchTransform(AugmentSpec(), self.MEAN, self.STD, train=False, divide_std=False)
        x = _batch(2)
        assert torch.allclose(tf(x), x.float() - torch.tensor(self.MEAN).view(1, 3, 1, 1))

    def test_star_eval_random_crops_with_generator(self):
        tf = BatchTransform(
            AugmentSpec(flip_double=True, pad=4, eval_pad_crop=True), self.MEAN, self.STD, train=False
        )
        x = _batch(16)
        a, b = tf(x, _gen(7)), tf(x, _gen(7))
        assert torch.equal(a, b) and not torch.equal(a, normalize(x, self.MEAN, self.STD))

    def test_rejects_float_input(self):
        tf = BatchTransform(AugmentSpec(), self.MEAN, self.STD, train=True)
        with pytest.raises(ValueError, match="uint8"):
            tf(torch.zeros(2, 3, 4, 4))


def test_epoch_generator_is_pure():
    a = torch.rand(5, generator=epoch_generator(3, 7))
    assert torch.equal(a, torch.rand(5, generator=epoch_generator(3, 7)))
    assert not torch.equal(a, torch.rand(5, generator=epoch_generator(3, 8)))
    assert not torch.equal(a, torch.rand(5, generator=epoch_generator(4, 7)))
    assert not torch.equal(a, torch.rand(5, generator=epoch_generator(3, 7, stream=2)))


def test_no_python_loop_over_samples():
    """A 1024-image batch is augmented in about the time of a few numpy ops, not 1024 loops."""
    import time

    x = torch.randint(0, 256, (1024, 3, 64, 64), dtype=torch.uint8)
    tf = BatchTransform(AugmentSpec(flip=True, pad=4), (128.0,) * 3, (64.0,) * 3, train=True)
    tf(x, _gen())
    start = time.perf_counter()
    tf(x, _gen())
    assert time.perf_counter() - start < 2.0
    np.testing.assert_equal(tf(x, _gen(9)).shape, (1024, 3, 64, 64))


def test_training_batches_are_really_flipped_and_shifted(tmp_path):
    """Through the engine's real pipeline (npz file -> loader -> BatchTransform): every training
    image is mirrored with probability 1/2 and shifted by the pad + random crop, evaluation
    images are untouched. Disabling the flip or the crop in the training path fails here."""
    from gmsop.data import get_dataset
    from gmsop.engine.data import DataPipeline

    n, size, col, row = 64, 24, 4, 8
    x = np.full((n, 3, size, size), 20, np.uint8)
    x[:, :, row : row + 4, col] = 250  # a bright vertical bar near the left edge
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(n) % 2)
    np.savez(tmp_path / "val.npz", x=x[:8], y=np.arange(8) % 2)
    ds = get_dataset("npz", root=tmp_path, augment={"flip": True, "pad": 4})
    pipe = DataPipeline(ds, 32, seed=0, device=torch.device("cpu"))

    def bars(batches):
        found = []
        for xb, _ in batches:
            m = xb.mean(1)  # (B, H, W): the bar is the brightest column / first brightest row
            found += list(zip(m.amax(1).argmax(1).tolist(), m.amax(2).argmax(1).tolist()))
        return found

    epochs = [bars(pipe.train_batches(e)) for e in (1, 2)]
    for found in epochs:
        assert len(found) == n
        flipped = [c > size // 2 for c, _ in found]
        assert 0.25 <= np.mean(flipped) <= 0.75  # about half mirrored (bar at column 19 +- 4)
        dx = [c - (size - 1 - col if f else col) for (c, _), f in zip(found, flipped)]
        dy = [r - row for _, r in found]
        assert all(-4 <= d <= 4 for d in dx + dy) and len(set(dx)) >= 3 and len(set(dy)) >= 3
    assert epochs[0] != epochs[1]  # a new draw every epoch
    assert set(bars(pipe.val_batches())) == {(col, row)}  # evaluation: no flip, no shift


# --- GPU readiness: same numbers on the CPU, no per-step constants or blocking copies ---


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


_MEAN, _STD = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)

#: Outputs of the earlier code (per-call constants, draws moved with ``.to``) for
#: ``_batch(32, 12, 12)`` and ``epoch_generator(7, 3, stream=1)``, three calls in a row on one
#: generator. A change here changes every training run's numbers and breaks resuming old runs.
_GOLDEN = {
    "flip_pad": (
        AugmentSpec(flip=True, pad=4),
        True,
        ["6a3255ce03e13e94", "d640d1b58803bf59", "c9c2db5892f23e46"],
    ),
    "flip_crop": (
        AugmentSpec(flip=True, train_crop=10, eval_crop=10),
        False,
        ["89c20d90d5334a34", "af2b9b8cd8010be5", "e64d81190375ac19"],
    ),
    "pad_only": (AugmentSpec(pad=2), True, ["a56d632b2c9cc6b3", "e4d56bea6b41e505", "adca8eaff8c58fd1"]),
}


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_training_transform_on_cpu_is_bit_identical_to_before(name):
    spec, divide, digests = _GOLDEN[name]
    tf = BatchTransform(spec, _MEAN, _STD, train=True, divide_std=divide)
    g = epoch_generator(7, 3, stream=1)
    x = _batch(32, 12, 12)
    assert [_digest(tf(x, g)) for _ in range(3)] == digests


def test_training_transform_equals_the_explicit_old_recipe():
    """The draw order and the ops of before, written out: flip mask, then top, then left offsets
    from the same generator; fill = rounded mean; (x - mean) / std in float32."""
    x, pad = _batch(32, 12, 12), 4
    tf = BatchTransform(AugmentSpec(flip=True, pad=pad), _MEAN, _STD, train=True)
    g_new, g_old = epoch_generator(5, 1), epoch_generator(5, 1)
    for _ in range(2):  # the generator's state carries over between calls identically
        got = tf(x, g_new)
        mask = torch.rand(32, generator=g_old) < 0.5
        flipped = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
        top = torch.randint(0, 2 * pad + 1, (32,), generator=g_old)
        left = torch.randint(0, 2 * pad + 1, (32,), generator=g_old)
        padded = torch.tensor([120, 110, 100], dtype=torch.uint8).view(1, 3, 1, 1).repeat(32, 1, 20, 20)
        padded[:, :, pad:-pad, pad:-pad] = flipped
        crops = torch.stack(
            [
                padded[i, :, t : t + 12, lf : lf + 12]
                for i, (t, lf) in enumerate(zip(top.tolist(), left.tolist()))
            ]
        )
        want = (crops.float() - torch.tensor(_MEAN).view(1, 3, 1, 1)) / torch.tensor(_STD).view(1, 3, 1, 1)
        assert torch.equal(got, want)


def test_eval_random_crop_is_bit_identical_to_before():
    tf = BatchTransform(AugmentSpec(flip_double=True, pad=4, eval_pad_crop=True), _MEAN, _STD, train=False)
    assert _digest(tf(_batch(32, 12, 12), epoch_generator(7, 0, stream=2))) == "d86a49412bc520f0"


def test_constants_are_built_once_per_device(monkeypatch):
    """After the first call, a call builds no constant tensor: mean, std and fill are the cached
    tensors themselves (on CUDA each rebuilt constant was a blocking host-to-device copy)."""
    tf = BatchTransform(AugmentSpec(flip=True, pad=4), _MEAN, _STD, train=True)
    x, g = _batch(16), _gen(0)
    tf(x, g)
    mean, std, fill = tf.constants("cpu")
    assert len(tf._constants) == 1
    built = []
    for fn in ("tensor", "as_tensor", "full", "empty"):  # every way to make a constant from Python values
        real = getattr(torch, fn)
        monkeypatch.setattr(
            torch, fn, lambda *a, _real=real, _fn=fn, **k: built.append(_fn) or _real(*a, **k)
        )
    used = []
    real_normalize, real_pad = augment_module.normalize, augment_module.pad_fill
    monkeypatch.setattr(
        augment_module, "normalize", lambda x, m, s=None: used.append((m, s)) or real_normalize(x, m, s)
    )
    monkeypatch.setattr(augment_module, "pad_fill", lambda x, p, f=0: used.append(f) or real_pad(x, p, f))
    for _ in range(3):
        tf(x, g)
    assert built == [] and len(tf._constants) == 1
    assert all(f is fill for f in used[0::2]) and all(m is mean and s is std for m, s in used[1::2])
    assert tf.constants(torch.device("cpu"))[0] is mean
    assert (
        mean.dtype == torch.float32
        and fill.dtype == torch.uint8
        and fill.flatten().tolist() == [120, 110, 100]
    )
    assert (
        BatchTransform(AugmentSpec(), _MEAN, _STD, train=False, divide_std=False).constants("cpu")[1] is None
    )


def test_cpu_draws_reach_another_device_through_pinned_non_blocking_copies(monkeypatch):
    """A CPU generator with data on a (stand-in) CUDA device: every per-step copy of the draws is
    pinned first and non-blocking; the only blocking copies are the constants, once."""
    monkeypatch.setattr(augment_module, "_PINNED_COPY_TYPES", frozenset({"meta"}))  # "meta" plays CUDA
    pinned, copies = [], []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned.append(tuple(self.shape)) or self)
    real_to = torch.Tensor.to

    def spy_to(self, *args, **kwargs):
        out = real_to(self, *args, **kwargs)
        if self.device.type == "cpu" and out.device.type == "meta":
            copies.append(bool(kwargs.get("non_blocking", False)))
        return out

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    tf = BatchTransform(AugmentSpec(flip=True, pad=4), _MEAN, _STD, train=True)
    x = torch.zeros(8, 3, 12, 12, dtype=torch.uint8, device="meta")
    out = tf(x, _gen(0))
    assert out.device.type == "meta" and out.shape == (8, 3, 12, 12)
    assert copies.count(False) == 3  # mean, std, fill: built once
    copies.clear()
    tf(x, _gen(1))
    assert pinned[-3:] == [(8,), (8,), (8,)] and copies == [True, True, True]  # mask, top, left


def test_pipeline_batches_on_cpu_are_bit_identical_to_before():
    """The engine's pipeline end to end (loader with mirror doubling, flip, pad + crop, eval
    random crops; generators now made on the pipeline's device): the same bytes as before."""
    from gmsop.data import Split
    from gmsop.data.base import Dataset
    from gmsop.engine.data import DataPipeline

    def split(n, k):
        i, r = torch.arange(n).view(n, 1, 1, 1), torch.arange(12).view(1, 1, 12, 1)
        c, ch = torch.arange(12).view(1, 1, 1, 12), torch.arange(3).view(1, 3, 1, 1)
        return Split(
            ((i * 37 + r * 11 + c * 5 + ch * 71 + k) % 256).to(torch.uint8).contiguous(), torch.arange(n) % 5
        )

    ds = Dataset(
        "golden",
        5,
        split(100, 0),
        split(20, 9),
        (121.3, 119.6, 126.2),
        (70.0, 71.0, 72.0),
        AugmentSpec(flip=True, pad=4, flip_double=True, eval_pad_crop=True),
    )
    golden = {
        "mean": ("6edb8e0d936d88dc", "5de1eb19d64f4933", "41d4b7a7aeef94b7"),
        "mean_std": ("c327ba19deffd4f2", "8807c4d29f10b7b1", "4b1895d374d63c53"),
    }
    for norm, (e0, e2, val) in golden.items():
        pipe = DataPipeline(ds, 16, seed=11, device=torch.device("cpu"), input_norm=norm)
        assert pipe.placement == "train: host memory (cpu); val: host memory (cpu)"
        got = []
        for e in (0, 2):
            xs, ys = zip(*pipe.train_batches(e))
            got.append(_digest(torch.cat(xs)))
            assert _digest(torch.cat(ys)) == {0: "43b0af755b3e3af9", 2: "a70b41352d9d4431"}[e]
        xs, ys = zip(*pipe.val_batches(1))
        assert (got[0], got[1], _digest(torch.cat(xs))) == (e0, e2, val)
        resident = DataPipeline(ds, 16, seed=11, device=torch.device("cpu"), input_norm=norm, resident=True)
        assert resident.placement.startswith("train: resident on cpu")
        assert _digest(torch.cat([x for x, _ in resident.train_batches(2)])) == e2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("resident", [True, False])
def test_cuda_training_epoch_never_synchronises_and_resumes_exactly(resident):
    """On CUDA, once the constants exist, a training epoch makes no synchronising call (no
    blocking copy; ``set_sync_debug_mode("error")`` raises on one), and a fresh pipeline (a
    resumed run) yields the same batches for the same epoch."""
    from gmsop.data import Split
    from gmsop.data.base import Dataset
    from gmsop.engine.data import DataPipeline

    images = torch.randint(
        0, 256, (96, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    ds = Dataset(
        "cuda-check",
        4,
        Split(images, torch.arange(96) % 4),
        Split(images[:16], torch.arange(16) % 4),
        (120.0, 110.0, 100.0),
        (60.0, 50.0, 40.0),
        AugmentSpec(flip=True, pad=4, flip_double=True),
    )
    dev = torch.device("cuda")

    def epoch(pipe, e):
        return [(x.cpu(), y.cpu()) for x, y in pipe.train_batches(e)]

    pipe = DataPipeline(ds, 16, seed=3, device=dev, resident=resident)
    assert pipe.train_loader.resident is resident
    epoch(pipe, 0)  # builds the constants (one copy per transform and device)
    torch.cuda.synchronize()
    if resident:  # the host path waits on CUDA events for its pinned buffers, by design
        torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [(x, y) for x, y in pipe.train_batches(1)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(x.device.type == "cuda" and x.dtype == torch.float32 for x, _ in batches)
    again = epoch(DataPipeline(ds, 16, seed=3, device=dev, resident=resident), 1)
    assert all(torch.equal(x.cpu(), a) and torch.equal(y.cpu(), b) for (x, y), (a, b) in zip(batches, again))
    other = epoch(
        DataPipeline(ds, 16, seed=3, device=dev, resident=not resident), 1
    )  # placement changes nothing
    assert all(torch.equal(x.cpu(), a) and torch.equal(y.cpu(), b) for (x, y), (a, b) in zip(batches, other))
