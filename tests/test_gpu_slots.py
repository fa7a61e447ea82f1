"""gmsop.gpu_slots: one GPU per job on a multi-GPU box. Plain file locking, so no GPU is needed:
the slots are fake (an explicit count, a CUDA_VISIBLE_DEVICES pool, or a fake nvidia-smi)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gmsop import gpu_slots
from gmsop.gpu_slots import claim_gpus, gpu_slot, release_gpus, visible_gpus

MODULE = Path(gpu_slots.__file__)
REPO = MODULE.parents[1]

# A worker process: claims GPUs, records (devices, CUDA_VISIBLE_DEVICES, start, end), exits.
# It loads gpu_slots.py on its own (not `import gmsop`, which would import torch: slow).
WORKER = textwrap.dedent(
    """
    import importlib.util, json, os, sys, time
    spec = importlib.util.spec_from_file_location("gpu_slots", sys.argv[1])
    m = sys.modules["gpu_slots"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    n, num_gpus, lock_dir, hold, out = int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6]
    timeout = float(sys.argv[7]) if len(sys.argv) > 7 else None
    try:
        claim = m.claim_gpus(n, num_gpus=int(num_gpus) if num_gpus != "env" else None,
                             lock_directory=lock_dir, poll=0.02, timeout=timeout, quiet=True)
    except TimeoutError:
        sys.exit(3)
    t0 = time.time()
    print("ready", flush=True)
    time.sleep(hold)
    t1 = time.time()
    with open(out, "w") as f:
        json.dump({"pid": os.getpid(), "devices": claim.devices, "reason": claim.reason,
                   "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "t0": t0, "t1": t1}, f)
    """
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gpu_slots.ENV_NUM_GPUS, gpu_slots.ENV_DISABLE):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    yield
    release_gpus()


@pytest.fixture
def worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = []

    def start(name, n=1, num_gpus=2, hold=0.0, timeout=None, env=None):
        out = tmp_path / f"{name}.json"
        cmd = [sys.executable, str(script), str(MODULE), str(n), str(num_gpus), str(tmp_path / "locks"),
               str(hold), str(out)] + ([str(timeout)] if timeout is not None else [])
        e = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
        e.update(env or {})
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=e)
        procs.append(p)
        return p, out

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _overlaps(a, b):
    return a["t0"] < b["t1"] and b["t0"] < a["t1"]


# ---- which GPUs ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, expected",
    [("2,3", ["2", "3"]), ("0", ["0"]), ("", []), ("-1", []), ("0,-1,1", ["0"]),
     ("GPU-8a1f,GPU-77c2", ["GPU-8a1f", "GPU-77c2"]), (" 1, 0 ", ["1", "0"])],
)
def test_pool_from_cuda_visible_devices(monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpus() == expected


def test_explicit_count_beats_environment(monkeypatch):
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "2")
    assert visible_gpus(3) == ["0", "1", "2"]
    assert visible_gpus() == ["0", "1"]


def test_count_from_fake_nvidia_smi(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)"\n'
        'echo "  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)"\n'
        'echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-cccc)"\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus() == ["0", "1"]


def test_no_gpus_no_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    monkeypatch.setattr(gpu_slots, "_count_proc", lambda: 0)
    assert visible_gpus() == []
    claim = claim_gpus(1)
    assert claim.devices == [] and not claim.active and claim.reason == "no GPUs on this machine"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


# ---- when it stands aside ------------------------------------------------------------------------

def test_zero_gpus_requested_does_nothing():
    claim = claim_gpus(0, num_gpus=2)
    assert claim.devices == [] and claim.reason == "no GPU requested"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_slurm_assigned_gpus_are_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as slurmd sets it for --gpus=1
    claim = claim_gpus(1)
    assert claim.reason == "GPUs assigned by SLURM" and not claim.active
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert not (tmp_path / "locks").exists()


def test_inside_a_larger_slurm_allocation_slots_are_per_job(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # salloc --gpus=4, local snakemake inside
    claim = claim_gpus(1)
    assert claim.active and len(claim.devices) == 1
    assert Path(claim.lock_files[0]).parent == tmp_path / "locks" / "slurm-42"


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv(gpu_slots.ENV_DISABLE, "off")
    claim = claim_gpus(1, num_gpus=4)
    assert claim.reason.startswith("disabled") and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_more_gpus_per_job_than_exist():
    with pytest.raises(ValueError, match="2 GPU.*only 1 visible"):
        claim_gpus(2, num_gpus=1)


# ---- claiming, in one process (flock on separate descriptors conflicts within a process too) -----

def test_pool_is_shared_and_exhausted(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    with gpu_slot(1, quiet=True) as a:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == a.devices[0] and a.devices[0] in ("5", "7")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # what the next job would see
        with gpu_slot(1, quiet=True) as b:
            assert {a.devices[0], b.devices[0]} == {"5", "7"}
            os.environ["CUDA_VISIBLE_DEVICES"] = "5,7"
            t = time.monotonic()
            with pytest.raises(TimeoutError, match="no 1 free GPU"):
                with gpu_slot(1, timeout=0.2, poll=0.05, quiet=True):
                    pass
            assert time.monotonic() - t >= 0.2
        # b released: its device is free again
        os.environ["CUDA_VISIBLE_DEVICES"] = "5,7"
        with gpu_slot(1, timeout=0, quiet=True) as c:
            assert c.devices == b.devices
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"  # restored by the context manager


def test_context_manager_restores_environment():
    with gpu_slot(1, num_gpus=2, quiet=True) as claim:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == claim.devices[0]
        assert Path(claim.lock_files[0]).read_text().startswith(f"pid={os.getpid()} ")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_claim_gpus_is_once_per_process():
    a = claim_gpus(1, num_gpus=3, quiet=True)
    b = claim_gpus(1, num_gpus=3, quiet=True)
    assert a is b and a.active
    release_gpus()
    assert not a.active


def test_two_gpus_per_job():
    with gpu_slot(2, num_gpus=3, quiet=True) as a:
        assert len(a.devices) == 2 and os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(a.devices)
        del os.environ["CUDA_VISIBLE_DEVICES"]
        with pytest.raises(TimeoutError):  # only one left: a 2-GPU job must wait, holding nothing
            with gpu_slot(2, num_gpus=3, timeout=0.1, poll=0.02, quiet=True):
                pass
        with gpu_slot(1, num_gpus=3, timeout=0, quiet=True) as b:  # ... so a 1-GPU job still fits
            assert b.devices[0] not in a.devices


# ---- real processes contending ---------------------------------------------------------------------

def test_parallel_jobs_never_share_a_gpu(worker):
    """6 jobs, 2 fake GPUs (as `snakemake --resources gpu=2` would let them start, and more):
    no two jobs hold one GPU at the same time, both GPUs are used, the rest wait."""
    hold = 0.4
    jobs = [worker(f"job{i}", n=1, num_gpus=2, hold=hold) for i in range(6)]
    t = time.monotonic()
    for p, _ in jobs:
        assert p.wait(timeout=60) == 0
    wall = time.monotonic() - t
    recs = [json.loads(out.read_text()) for _, out in jobs]
    for r in recs:
        assert len(r["devices"]) == 1 and r["cvd"] == r["devices"][0]
    assert {r["devices"][0] for r in recs} == {"0", "1"}
    for i, a in enumerate(recs):
        for b in recs[i + 1:]:
            if a["devices"] == b["devices"]:
                assert not _overlaps(a, b), (a, b)
    assert wall >= 3 * hold * 0.95  # 6 jobs on 2 slots take at least 3 rounds


def test_killed_holder_frees_its_gpu(worker):
    holder, _ = worker("holder", num_gpus=1, hold=60)
    assert holder.stdout.readline().strip() == "ready"
    waiter, _ = worker("waiter", num_gpus=1, timeout=0.3)
    assert waiter.wait(timeout=30) == 3  # TimeoutError: the only GPU is held
    holder.send_signal(signal.SIGKILL)  # no cleanup runs; the kernel drops the flock
    holder.wait(timeout=10)
    after, out = worker("after", num_gpus=1, timeout=5)
    assert after.wait(timeout=30) == 0
    assert json.loads(out.read_text())["devices"] == ["0"]


def test_command_wrapper_holds_the_gpu_while_the_command_runs(tmp_path):
    """python -m gmsop.gpu_slots -n 1 -- CMD: CMD (exec'd) sees its GPU and keeps the lock.
    (Run as `python .../gpu_slots.py`, the same main(), to skip importing torch via gmsop.)"""
    marker = tmp_path / "started"
    cmd = [sys.executable, str(MODULE), "-n", "1", "--num-gpus", "1", "--lock-dir", str(tmp_path / "locks"),
           "--", sys.executable, "-c",
           f"import os, time; open({str(marker)!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(3)"]
    p = subprocess.Popen(cmd, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert marker.read_text() == "0"
        with pytest.raises(TimeoutError):
            with gpu_slot(1, num_gpus=1, timeout=0.2, poll=0.05, quiet=True):
                pass
        assert p.wait(timeout=30) == 0
        with gpu_slot(1, num_gpus=1, timeout=1, quiet=True) as claim:
            assert claim.devices == ["0"]
    finally:
        if p.poll() is None:
            p.kill()


def test_a_count_within_a_visible_pool_takes_ids_from_the_pool(monkeypatch):
    """GMSOP_NUM_GPUS (or num_gpus) with CUDA_VISIBLE_DEVICES=4,5,6,7: ids from that pool."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert gpu_slots.visible_gpus(2) == ["4", "5"]
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "3")
    assert gpu_slots.visible_gpus() == ["4", "5", "6"]
    with pytest.raises(ValueError, match=r"num_gpus=5 but CUDA_VISIBLE_DEVICES='4,5,6,7' names only 4"):
        gpu_slots.visible_gpus(5)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_slots.visible_gpus() == ["0", "1", "2"]
