"""BatchLoader: resumable order, coverage, drop_last, mirror doubling, prefetch equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmsop.data import BatchLoader, Split, get_dataset
from gmsop.data.loader import batch_order, epoch_permutation
from gmsop.data.throughput import measure_loader_throughput


def _split(n=50, h=4, w=4):
    # image i is filled with i, so a batch's labels can be checked against its pixels
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()
    images[:, :, :, 0] = 255  # a marked left column, to see mirrors
    return Split(images, torch.arange(n, dtype=torch.int64) * 10)


def _ids(batch_images: torch.Tensor) -> list[int]:
    return batch_images[:, 0, 0, 1].tolist()


def _collect(loader, epoch, **kw):
    return [(x.clone(), y.clone()) for x, y in loader.iter_epoch(epoch, **kw)]


def test_permutation_is_a_function_of_seed_and_epoch():
    assert np.array_equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 3))
    assert not np.array_equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 4))
    assert not np.array_equal(epoch_permutation(100, 1, 3), epoch_permutation(100, 0, 3))


def test_epoch_covers_every_sample_once_and_labels_align():
    loader = BatchLoader(_split(50), 16, seed=1)
    assert len(loader) == 4
    seen = []
    for x, y in loader.iter_epoch(0):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert (y == torch.tensor(_ids(x)) * 10).all()  # labels follow their images
        seen += _ids(x)
    assert sorted(seen) == list(range(50))


def test_resumed_run_sees_the_same_batches():
    split = _split(50)
    uninterrupted = BatchLoader(split, 8, seed=5)
    run = [_collect(uninterrupted, e) for e in range(3)]
    resumed = BatchLoader(split, 8, seed=5)  # a fresh process resuming at epoch 2
    again = _collect(resumed, 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(run[2], again))
    mid = _collect(BatchLoader(split, 8, seed=5), 2, start_batch=3)  # resumed mid-epoch
    assert all(torch.equal(a[0], b[0]) for a, b in zip(run[2][3:], mid))
    assert _ids(run[0][0][0]) != _ids(run[1][0][0])  # epochs differ


def test_iter_is_epoch_zero():
    loader = BatchLoader(_split(30), 10, seed=0)
    via_iter = [_ids(x) for x, _ in loader]
    assert via_iter == [_ids(x) for x, _ in loader.iter_epoch(0)]
    assert via_iter != [_ids(x) for x, _ in loader.iter_epoch(4)]


def test_drop_last_and_len():
    split = _split(50)
    assert len(BatchLoader(split, 16, drop_last=True)) == 3
    sizes = [len(y) for _, y in BatchLoader(split, 16, drop_last=True)]
    assert sizes == [16, 16, 16]
    assert [len(y) for _, y in BatchLoader(split, 16)] == [16, 16, 16, 2]
    with pytest.raises(ValueError, match="gives no batch"):
        BatchLoader(split, 64, drop_last=True)
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(split, 0)


def test_no_shuffle_keeps_stored_order():
    ids = [i for x, _ in BatchLoader(_split(20), 6, shuffle=False) for i in _ids(x)]
    assert ids == list(range(20))


def test_prefetch_matches_serial():
    split = _split(50)
    a = _collect(BatchLoader(split, 7, seed=2, prefetch=True), 1)
    b = _collect(BatchLoader(split, 7, seed=2, prefetch=False), 1)
    assert len(a) == len(b) == 8
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))


def test_early_break_releases_thread():
    import threading

    loader = BatchLoader(_split(50), 4)
    before = threading.active_count()
    for k, _ in enumerate(loader):
        if k == 2:
            break
    import gc

    gc.collect()
    assert threading.active_count() <= before


def test_flip_double_yields_each_image_and_its_mirror():
    split = _split(20)
    loader = BatchLoader(split, 8, seed=0, flip_double=True)
    assert loader.num_samples == 40 and len(loader) == 5
    count = {}
    for x, _ in loader:
        for img in x:
            i = int(img[0, 0, 1])
            mirrored = bool(img[0, 0, -1] == 255)
            assert mirrored != bool(img[0, 0, 0] == 255)
            count[(i, mirrored)] = count.get((i, mirrored), 0) + 1
    assert count == {(i, m): 1 for i in range(20) for m in (False, True)}


def test_batch_order_is_sorted_within_batches():
    for b in batch_order(100, 32, seed=0, epoch=0):
        assert np.all(np.diff(b) > 0)


def test_works_on_memmap_split(tmp_path):
    x = np.arange(10 * 3 * 2 * 2, dtype=np.uint8).reshape(10, 3, 2, 2)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="c")
    split = Split(torch.from_numpy(mm), torch.arange(10))
    got = torch.cat([xb for xb, _ in BatchLoader(split, 3, shuffle=False)])
    assert torch.equal(got, torch.from_numpy(x))


def test_double_buffer_slots_without_cuda(monkeypatch):
    """The pinned-buffer path (two alternating buffers) yields the same batches as plain gathers."""
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)  # no CUDA here: plain memory
    split = _split(50)
    ref = _collect(BatchLoader(split, 8, seed=4), 0)
    for prefetch in (True, False):
        loader = BatchLoader(split, 8, seed=4, prefetch=prefetch)
        loader._pinned = True  # as on a CUDA device
        got = _collect(loader, 0)  # cloned on arrival, as a device copy would be
        assert len(loader._buffers) == 2
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, got))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_delivery_matches_cpu():
    split = _split(100)
    cpu = _collect(BatchLoader(split, 16, seed=3), 0)
    gpu = [(x.cpu(), y.cpu()) for x, y in BatchLoader(split, 16, seed=3, device="cuda").iter_epoch(0)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(cpu, gpu))
    dbl = [
        (x.cpu(), y.cpu())
        for x, y in BatchLoader(split, 16, seed=3, device="cuda", flip_double=True).iter_epoch(0)
    ]
    ref = _collect(BatchLoader(split, 16, seed=3, flip_double=True), 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ref, dbl))


def test_throughput_measurement_runs():
    ds = get_dataset("synthetic", classes=4, n_train=600, n_val=8, augment="flip")
    result = measure_loader_throughput(ds, batch_size=64, seconds=0.2)
    assert result["images_per_s"] > 0 and result["images"] >= 64
    assert result["input_size"] == [3, 32, 32]


# --- resident data: gather on the data's device, same batches as the host path ---


@pytest.mark.parametrize("flip_double", [False, True])
@pytest.mark.parametrize("prefetch", [True, False])
def test_resident_path_gives_the_same_batches(flip_double, prefetch):
    split = _split(50)
    host = BatchLoader(split, 8, seed=7, flip_double=flip_double, resident=False)
    resident = BatchLoader(split, 8, seed=7, flip_double=flip_double, prefetch=prefetch, resident=True)
    assert not host.resident and resident.resident
    assert resident._data[0] is split.images  # on the CPU the split's tensor is used directly
    for epoch in (0, 3):
        for start in (0, 4):
            a = _collect(host, epoch, start_batch=start)
            b = _collect(resident, epoch, start_batch=start)
            assert len(a) == len(b) == len(host) - start
            assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    if flip_double:  # the mirrors really are there
        x = torch.cat([x for x, _ in _collect(resident, 0)])
        assert int((x[:, 0, 0, -1] == 255).sum()) == 50


def test_resident_equals_host_with_drop_last_and_no_shuffle():
    split = _split(45)
    for kw in ({"drop_last": True}, {"shuffle": False}):
        a = _collect(BatchLoader(split, 16, seed=2, resident=False, **kw), 1)
        b = _collect(BatchLoader(split, 16, seed=2, resident=True, **kw), 1)
        assert len(a) == len(b) and all(
            torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b)
        )


def test_auto_on_cpu_keeps_the_host_path():
    loader = BatchLoader(_split(20), 8)
    assert loader.resident is False and loader._data is None
    assert loader.placement == "host memory (cpu)"


def test_resident_rejects_bad_values():
    with pytest.raises(ValueError, match="resident must be 'auto', True or False, got 'yes'"):
        BatchLoader(_split(20), 8, resident="yes")
    with pytest.raises(ValueError, match="got 1"):
        BatchLoader(_split(20), 8, resident=1)
    with pytest.raises(ValueError, match=r"resident_fraction must be a number in \(0, 1\], got 1.5"):
        BatchLoader(_split(20), 8, resident_fraction=1.5)


def _fake_cuda(monkeypatch, free, total=80e9):
    import gmsop.data.loader as loader_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free), int(total)))
    moved = []
    monkeypatch.setattr(loader_module, "_copy_to", lambda t, device, **kw: moved.append(device) or t)
    return moved


def test_auto_on_cuda_is_resident_when_the_split_takes_at_most_half_the_free_memory(monkeypatch):
    split = _split(50, 8, 8)  # 50 * 192 image bytes + 50 * 8 label bytes = 10,000 bytes
    moved = _fake_cuda(monkeypatch, free=20_000)
    loader = BatchLoader(split, 8, device="cuda")
    assert loader.resident and not loader._pinned and moved == [torch.device("cuda", 0)] * 2
    assert loader.placement == "resident on cuda:0 (0.0 MB of 0.0 MB free)"
    moved.clear()
    _fake_cuda(monkeypatch, free=19_999)
    loader = BatchLoader(split, 8, device="cuda")
    assert not loader.resident and loader._pinned and moved == []
    assert loader.placement.startswith("host memory, pinned overlapped copies to cuda:0 (0.0 MB > 50% of")
    assert BatchLoader(split, 8, device="cuda", resident_fraction=0.6).resident
    assert not BatchLoader(split, 8, device="cuda", resident=False).resident


def test_pinned_path_mirror_mask_travels_in_the_pinned_buffers(monkeypatch):
    """With flip_double on the pinned path the mirror mask is a slice of the slot's pinned
    buffer (copied non-blocking with the images), and the batches equal the plain path's."""
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)  # no CUDA here: plain memory
    split = _split(50)
    ref = _collect(BatchLoader(split, 8, seed=4, flip_double=True), 0)
    loader = BatchLoader(split, 8, seed=4, flip_double=True)
    loader._pinned = True  # as on a CUDA device
    _, _, mask = loader._gather(loader.batch_indices(0)[0], 1)
    assert mask.data_ptr() == loader._buffers[1][2].data_ptr() and mask.dtype == torch.bool
    got = _collect(loader, 0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, got))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resident_and_host_paths_match_cpu():
    split = _split(100)
    for flip_double in (False, True):
        ref = _collect(BatchLoader(split, 16, seed=3, flip_double=flip_double), 2, start_batch=1)
        for resident in (True, False):
            loader = BatchLoader(split, 16, seed=3, device="cuda", flip_double=flip_double, resident=resident)
            assert loader.resident is resident
            got = [(x.cpu(), y.cpu()) for x, y in loader.iter_epoch(2, start_batch=1)]
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, got))
    assert BatchLoader(split, 16, device="cuda").resident  # 'auto': a tiny split fits
