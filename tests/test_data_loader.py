"""BatchLoader: resumable order, coverage, drop_last, mirror doubling, prefetch equivalence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmsop.data import BatchLoader, Split, batch_order, epoch_permutation, get_dataset, measure_loader_throughput


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


def test_set_epoch_and_iter():
    loader = BatchLoader(_split(30), 10, seed=0)
    loader.set_epoch(4)
    via_iter = [_ids(x) for x, _ in loader]
    assert via_iter == [_ids(x) for x, _ in loader.iter_epoch(4)]


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
    for x, y in loader:
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_delivery_matches_cpu():
    split = _split(100)
    cpu = _collect(BatchLoader(split, 16, seed=3), 0)
    gpu = [(x.cpu(), y.cpu()) for x, y in BatchLoader(split, 16, seed=3, device="cuda").iter_epoch(0)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(cpu, gpu))
    dbl = [(x.cpu(), y.cpu()) for x, y in BatchLoader(split, 16, seed=3, device="cuda", flip_double=True).iter_epoch(0)]
    ref = _collect(BatchLoader(split, 16, seed=3, flip_double=True), 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ref, dbl))


def test_throughput_measurement_runs():
    ds = get_dataset("synthetic", classes=4, n_train=600, n_val=8, augment="flip")
    result = measure_loader_throughput(ds, batch_size=64, seconds=0.2)
    assert result["images_per_s"] > 0 and result["images"] >= 64
    assert result["input_size"] == [3, 32, 32]
