"""Atomic writes, RNG state capture/restore, checkpoints, device resolution."""

import random

import numpy as np
import pytest
import torch

from gmsop.atomic import append_json_line, atomic_write, atomic_write_json
from gmsop.engine.checkpoint import (
    CheckpointMismatchError,
    check_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from gmsop.engine.env import capture_rng_state, resolve_device, restore_rng_state


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})

    def boom(fh):
        fh.write(b'{"half": ')
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not list(tmp_path.iterdir())


def test_append_json_line(tmp_path):
    p = tmp_path / "progress.jsonl"
    append_json_line(p, {"epoch": 1})
    append_json_line(p, {"epoch": 2})
    assert p.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'


def test_rng_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.randn(3), np.random.randn(3), random.random()
    save_checkpoint(
        tmp_path / "c.pt",
        {
            "fingerprint": {"seed": 0},
            "epoch": 0,
            "model": {},
            "optimizer": {},
            "rng": capture_rng_state(),
            "records": [],
            "totals": {},
        },
    )
    expected = (torch.randn(5), np.random.randn(5), [random.random() for _ in range(5)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.randn(5), np.random.randn(5), [random.random() for _ in range(5)])
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    torch.save({"format": 99}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format 99"):
        load_checkpoint(tmp_path / "old.pt")
    with pytest.raises(CheckpointMismatchError, match="batch_size: checkpoint 32 vs now 64"):
        check_fingerprint({"fingerprint": {"batch_size": 32}}, {"batch_size": 64}, "x.pt")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error given without CUDA")
def test_resolve_device_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resolve_device_on_cuda():
    assert resolve_device("cuda").type == "cuda" and resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"only {count} CUDA device"):
        resolve_device(f"cuda:{count}")


def test_progress_modes():
    import io

    from gmsop.engine.trainer import Progress

    record = {
        "epoch": 1,
        "lr": 0.1,
        "train_loss": 2.0,
        "train_ce": 1.9,
        "train_balance": 0.1,
        "train_top1_err": 80.0,
        "val_top1_err": None,
        "val_top5_err": None,
        "train_img_s": 100.0,
        "epoch_time_s": 3.0,
    }
    lines = io.StringIO()
    p = Progress("auto", stream=lines)  # not a terminal: one line per epoch
    assert p.mode == "lines"
    p.start_epoch(1, 2, 4, 0.1)
    p.step(2.0)
    p.end_epoch(record, 2, 3.0)
    assert (
        lines.getvalue().count("\n") == 1
        and "epoch 1/2 lr 0.1" in lines.getvalue()
        and "ETA 0:00:03" in lines.getvalue()
    )
    bar = io.StringIO()
    p = Progress("bar", stream=bar)
    p.start_epoch(1, 2, 4, 0.1)
    for _ in range(4):
        p.step(2.0)
    p.end_epoch(record, 2, 3.0)
    assert "epoch 1/2" in bar.getvalue() and "\r" in bar.getvalue()


def test_remove_stale_temps_only_touches_our_temps(tmp_path):
    from gmsop.atomic import remove_stale_temps

    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".other.pt.abc.tmp").write_bytes(b"not ours")
    (tmp_path / "last.pt").write_bytes(b"whole")
    assert [p.name for p in remove_stale_temps(tmp_path / "last.pt")] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abc.tmp", "last.pt"]
