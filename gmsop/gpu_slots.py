"""One GPU per job when several jobs share one machine: a per-GPU lock taken before CUDA starts.

``claim_gpus(n)`` takes an exclusive ``fcntl.flock`` on ``<lock dir>/<host>-gpu<id>.lock`` for ``n``
free GPUs (waiting while none is free), sets ``CUDA_VISIBLE_DEVICES`` and holds them until the process
exits. Lock dir ``$GMSOP_GPU_LOCK_DIR`` (default ``/tmp/gmsop-gpu-locks``); GPUs from
``$CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L`` (``$GMSOP_NUM_GPUS`` forces a count); off with
``GMSOP_GPU_SLOTS=off`` and inside SLURM jobs. README "Several GPUs on one machine" has the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import os
import re
import socket
import subprocess
import sys
import time

ENV_LOCK_DIR, ENV_NUM_GPUS, ENV_DISABLE = "GMSOP_GPU_LOCK_DIR", "GMSOP_NUM_GPUS", "GMSOP_GPU_SLOTS"
DEFAULT_LOCK_DIR = "/tmp/gmsop-gpu-locks"

_held: tuple[list[str], list[int]] | None = None  # (devices, lock descriptors) of this process's claim


def _pool() -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of ids (CUDA ignores everything from the first invalid
    entry on, e.g. ``-1``); None when it is not set."""
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return None
    ids = [v.strip() for v in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
    return list(itertools.takewhile(lambda v: v and v[0] != "-" and v not in ("none", "NoDevFiles"), ids))


def visible_gpus() -> list[str]:
    """The GPU ids a job may choose from, without initialising CUDA (see the module doc)."""
    pool = _pool()
    count = os.environ.get(ENV_NUM_GPUS, "").strip()
    if count:
        if not count.isdigit():
            raise ValueError(f"{ENV_NUM_GPUS} must be a count of GPUs (0, 1, ...), got {count!r}")
        if pool is not None and int(count) > len(pool):
            raise ValueError(
                f"{ENV_NUM_GPUS}={count} but CUDA_VISIBLE_DEVICES="
                f"{os.environ['CUDA_VISIBLE_DEVICES']!r} names only {len(pool)} GPU(s)"
            )
        return pool[: int(count)] if pool is not None else [str(i) for i in range(int(count))]
    if pool is not None:
        return pool
    listing = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # no nvidia-smi: no GPU
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    return [str(i) for i in range(len(re.findall(r"(?m)^GPU \d+:", listing)))]


def _try_lock(path: str) -> int | None:
    """A descriptor holding an exclusive lock on ``path``, or None while another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # let other users lock it too
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def claim_gpus(n: int = 1, *, timeout: float | None = None) -> list[str]:
    """Claim ``n`` free GPUs for the rest of this process and point CUDA_VISIBLE_DEVICES at them:
    the ids, ``[]`` where it stands aside; a second call returns the first one's. Waits while too
    few are free (``timeout`` seconds, then TimeoutError)."""
    global _held
    if _held is not None:
        return _held[0]
    if n < 0:
        raise ValueError(f"claim_gpus: n must be >= 0, got {n}")
    pool = visible_gpus() if n else []
    slurm_gave = os.environ.get("SLURM_JOB_ID") and _pool() is not None and len(pool) <= n
    disabled = os.environ.get(ENV_DISABLE, "").strip().lower() in ("0", "off", "no", "false")
    if not pool or slurm_gave or disabled:
        return []
    if n > len(pool):
        raise ValueError(f"{n} GPU(s) requested per job but only {len(pool)} visible: {pool}")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError(
            "gmsop.gpu_slots: torch already initialised CUDA in this process, so CUDA_VISIBLE_DEVICES "
            "can no longer take effect; claim the GPU before using torch.cuda"
        )
    directory = os.environ.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR
    if os.environ.get("SLURM_JOB_ID"):  # inside an allocation: its device ids are its own
        directory = os.path.join(directory, f"slurm-{os.environ['SLURM_JOB_ID']}")
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o1777)  # shared by users, like /tmp
    host = socket.gethostname().split(".")[0] or "localhost"
    start, offset = time.monotonic(), os.getpid() % len(pool)  # simultaneous starters: other first files
    for attempt in itertools.count():
        got: dict[str, int] = {}
        for dev in pool[offset:] + pool[:offset]:
            path = os.path.join(directory, re.sub(r"[^\w.-]", "_", f"{host}-gpu{dev}.lock"))
            if len(got) < n and (fd := _try_lock(path)) is not None:
                got[dev] = fd
        if len(got) == n:
            break
        for fd in got.values():  # too few free: hold nothing while waiting
            os.close(fd)
        if timeout is not None and time.monotonic() - start >= timeout:
            raise TimeoutError(f"no {n} free GPU slot(s) of {pool} in {directory} after {timeout:g} s")
        if not attempt:
            print(
                f"gmsop.gpu_slots: all {len(pool)} GPU slot(s) in {directory} busy; waiting", file=sys.stderr
            )
        time.sleep(0.2)
    devices = sorted(got, key=pool.index)
    for fd in got.values():  # who holds it, for people looking at the lock dir
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} host={host} since={time.time():.0f}\n".encode(), 0)
    _held = devices, list(got.values())
    os.environ["CUDA_VISIBLE_DEVICES"] = cvd = ",".join(devices)
    print(f"gmsop.gpu_slots: CUDA_VISIBLE_DEVICES={cvd} (locks in {directory})", file=sys.stderr)
    return devices


def job_device(device: str, gpus_per_job: int, visible: int | None = None) -> tuple[str, str]:
    """The device a workflow job trains on, and a note for its log ("" when there is nothing to say).
    ``visible``: GPUs on this machine (None: looked up when the note needs it). With ``gpus_per_job:
    0`` Snakemake schedules by cores alone, so ``auto`` means the CPU (parallel jobs would pile onto
    cuda:0) and ``cuda`` shares the visible GPU(s); with a reserved GPU ``auto`` stays auto."""
    device = str(device).strip().lower()
    if gpus_per_job < 0:
        raise ValueError(f"gpus_per_job must be >= 0, got {gpus_per_job}")
    if gpus_per_job >= 1 or device not in ("auto", "cuda"):
        return device, ""
    if device == "cuda":
        return "cuda", (
            "gmsop: device cuda with gpus_per_job 0: this job reserved no GPU and shares the "
            "visible one(s) with every other job"
        )
    if visible is None:
        try:
            visible = len(visible_gpus())
        except ValueError:  # a bad GMSOP_NUM_GPUS: claim_gpus reports it where it matters
            visible = 0
    note = (
        f"gmsop: device auto with gpus_per_job 0: this job runs on the CPU although {visible} GPU(s) are "
        f"visible; to use them, set gpus_per_job: 1 and run snakemake with --resources gpu=<GPUs> (one GPU "
        f"per job), or device: cuda (jobs share them)"
    )
    return "cpu", note if visible else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m gmsop.gpu_slots [-n N] -- COMMAND ...``: run COMMAND on N free GPUs (it replaces
    this process and inherits the locks, so they are held exactly as long as it runs)."""
    p = argparse.ArgumentParser(prog="python -m gmsop.gpu_slots", description=main.__doc__)
    p.add_argument("-n", "--gpus", type=int, default=1, help="GPUs for the command (default 1; 0: run as is)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command given (usage: python -m gmsop.gpu_slots -n 1 -- COMMAND ...)")
    claim_gpus(args.gpus, timeout=args.timeout)
    for fd in _held[1] if _held else []:
        os.set_inheritable(fd, True)
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"gmsop.gpu_slots: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
