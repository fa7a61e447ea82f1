"""gmsop.gpu_slots: one GPU per job on a multi-GPU box. Plain file locking, so no GPU is needed:
the slots are fake (a GMSOP_NUM_GPUS count, a CUDA_VISIBLE_DEVICES pool, or a fake nvidia-smi).
A claim lasts as long as its process, so every claim that succeeds is made in a worker process."""

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
from gmsop.gpu_slots import claim_gpus, visible_gpus

MODULE = Path(gpu_slots.__file__)
REPO = MODULE.parents[1]

# A worker process: claims GPUs (twice: the second call must return the first's), records
# (devices, CUDA_VISIBLE_DEVICES, start, end) and exits; exit 3 on TimeoutError. It loads
# gpu_slots.py on its own (not `import gmsop`, which would import torch: slow).
WORKER = textwrap.dedent(
    """
    import importlib.util, json, os, sys, time
    spec = importlib.util.spec_from_file_location("gpu_slots", sys.argv[1])
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    n, hold, out = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    try:
        devices = m.claim_gpus(n, timeout=float(sys.argv[5]) if len(sys.argv) > 5 else None)
    except TimeoutError:
        sys.exit(3)
    assert m.claim_gpus(n) == devices
    t0 = time.time()
    print("ready", flush=True)
    time.sleep(hold)
    with open(out, "w") as f:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        json.dump({"devices": devices, "cvd": cvd, "t0": t0, "t1": time.time()}, f)
    """
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gpu_slots.ENV_NUM_GPUS, gpu_slots.ENV_DISABLE):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))


@pytest.fixture
def worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = []

    def start(name, n=1, gpus="2", hold=0.0, timeout=None, **env):
        out = tmp_path / f"{name}.json"
        cmd = [sys.executable, str(script), str(MODULE), str(n), str(hold), str(out)]
        e = {**os.environ, gpu_slots.ENV_NUM_GPUS: gpus, **env}
        p = subprocess.Popen(
            cmd + ([str(timeout)] if timeout is not None else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=e,
        )
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
    [
        ("2,3", ["2", "3"]),
        ("0", ["0"]),
        ("", []),
        ("-1", []),
        ("0,-1,1", ["0"]),
        ("GPU-8a1f,GPU-77c2", ["GPU-8a1f", "GPU-77c2"]),
        (" 1, 0 ", ["1", "0"]),
    ],
)
def test_pool_from_cuda_visible_devices(monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpus() == expected


def test_a_count_takes_ids_from_the_visible_pool(monkeypatch):
    """GMSOP_NUM_GPUS with CUDA_VISIBLE_DEVICES=4,5,6,7: ids from that pool, never 0..n-1."""
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "3")
    assert visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert visible_gpus() == ["4", "5", "6"]
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "5")
    with pytest.raises(ValueError, match=r"GMSOP_NUM_GPUS=5 but CUDA_VISIBLE_DEVICES='4,5,6,7' names only 4"):
        visible_gpus()
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "two")
    with pytest.raises(ValueError, match="GMSOP_NUM_GPUS must be a count.*'two'"):
        visible_gpus()


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


# ---- when it stands aside (nothing claimed, CUDA_VISIBLE_DEVICES untouched, no lock files) --------


def test_no_gpus_no_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    assert visible_gpus() == [] and claim_gpus(1) == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not (tmp_path / "locks").exists()


def test_zero_gpus_requested_or_disabled(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "2")
    assert claim_gpus(0) == []
    monkeypatch.setenv(gpu_slots.ENV_DISABLE, "off")
    assert claim_gpus(1) == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not (tmp_path / "locks").exists()


def test_slurm_assigned_gpus_are_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as slurmd sets it for --gpus=1
    assert claim_gpus(1) == []
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and not (tmp_path / "locks").exists()


def test_more_gpus_per_job_than_exist(monkeypatch):
    monkeypatch.setenv(gpu_slots.ENV_NUM_GPUS, "1")
    with pytest.raises(ValueError, match="2 GPU.*only 1 visible"):
        claim_gpus(2)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        claim_gpus(-1)


# ---- claims, in worker processes -------------------------------------------------------------------


def test_parallel_jobs_never_share_a_gpu(worker, tmp_path):
    """6 jobs, 2 fake GPUs (as `snakemake --resources gpu=2` would let them start, and more):
    no two jobs hold one GPU at the same time, both GPUs are used, the rest wait."""
    hold = 0.4
    jobs = [worker(f"job{i}", hold=hold) for i in range(6)]
    t = time.monotonic()
    for p, _ in jobs:
        assert p.wait(timeout=60) == 0
    wall = time.monotonic() - t
    recs = [json.loads(out.read_text()) for _, out in jobs]
    for r in recs:
        assert len(r["devices"]) == 1 and r["cvd"] == r["devices"][0]
    assert {r["devices"][0] for r in recs} == {"0", "1"}
    for i, a in enumerate(recs):
        for b in recs[i + 1 :]:
            if a["devices"] == b["devices"]:
                assert not _overlaps(a, b), (a, b)
    assert wall >= 3 * hold * 0.95  # 6 jobs on 2 slots take at least 3 rounds
    assert sorted(p.name.split("-gpu")[1] for p in (tmp_path / "locks").iterdir()) == ["0.lock", "1.lock"]


def test_a_pool_is_shared_and_a_two_gpu_job_holds_nothing_while_it_waits(worker):
    a, _ = worker("a", n=2, gpus="", hold=60, CUDA_VISIBLE_DEVICES="5,7,9")
    assert a.stdout.readline().strip() == "ready"
    b, _ = worker("b", n=2, gpus="", timeout=0.3, CUDA_VISIBLE_DEVICES="5,7,9")
    assert b.wait(timeout=30) == 3  # only one of three left: a 2-GPU job times out ...
    c, out_c = worker("c", n=1, gpus="", timeout=2, CUDA_VISIBLE_DEVICES="5,7,9")
    assert c.wait(timeout=30) == 0  # ... and held nothing, so a 1-GPU job still fits
    assert json.loads(out_c.read_text())["cvd"] in ("5", "7", "9")


def test_killed_holder_frees_its_gpu(worker):
    holder, _ = worker("holder", gpus="1", hold=60)
    assert holder.stdout.readline().strip() == "ready"
    waiter, _ = worker("waiter", gpus="1", timeout=0.3)
    assert waiter.wait(timeout=30) == 3  # TimeoutError: the only GPU is held
    holder.send_signal(signal.SIGKILL)  # no cleanup runs; the kernel drops the flock
    holder.wait(timeout=10)
    after, out = worker("after", gpus="1", timeout=5)
    assert after.wait(timeout=30) == 0
    assert json.loads(out.read_text())["devices"] == ["0"]


def test_inside_a_larger_slurm_allocation_slots_are_per_job(worker, tmp_path):
    p, out = worker("job", gpus="", SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="0,1,2,3")  # salloc --gpus=4
    assert p.wait(timeout=30) == 0 and len(json.loads(out.read_text())["devices"]) == 1
    assert [f.parent.name for f in (tmp_path / "locks").rglob("*.lock")] == ["slurm-42"]


def test_command_wrapper_holds_the_gpu_while_the_command_runs(tmp_path, worker):
    """python -m gmsop.gpu_slots -n 1 -- CMD: CMD (exec'd) sees its GPU and keeps the lock.
    (Run as `python .../gpu_slots.py`, the same main(), to skip importing torch via gmsop.)"""
    marker = tmp_path / "started"
    cmd = [
        sys.executable,
        str(MODULE),
        "-n",
        "1",
        "--",
        sys.executable,
        "-c",
        f"import os, time; open({str(marker)!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES']); "
        "time.sleep(3)",
    ]
    p = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, gpu_slots.ENV_NUM_GPUS: "1"})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert marker.read_text() == "0"
        waiter, _ = worker("waiter", gpus="1", timeout=0.2)
        assert waiter.wait(timeout=30) == 3  # the command holds the only GPU
        assert p.wait(timeout=30) == 0
        after, out = worker("after", gpus="1", timeout=1)
        assert after.wait(timeout=30) == 0 and json.loads(out.read_text())["devices"] == ["0"]
    finally:
        if p.poll() is None:
            p.kill()
