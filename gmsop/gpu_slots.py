"""One GPU per job when several jobs share one machine: a per-GPU lock taken before CUDA starts.

Snakemake's ``--resources gpu=N`` only limits how many GPU jobs run at once; it never tells a job
*which* GPU to use, so N parallel jobs would all land on ``cuda:0``. Each job therefore calls
``claim_gpus(n)`` before anything uses ``torch.cuda``; it points ``CUDA_VISIBLE_DEVICES`` at ``n``
free GPUs and holds them until the process exits. Around any command:
``python -m gmsop.gpu_slots -n 1 -- CMD ...``.

A slot is an exclusive ``fcntl.flock`` on ``<lock dir>/<host>-gpu<id>.lock``; the kernel drops it
when the holder exits, however it exits, so nothing is left to clean up. When every GPU is taken
the call waits. The lock dir is ``$GMSOP_GPU_LOCK_DIR``, else ``/tmp/gmsop-gpu-locks``, local to
the machine and shareable by several users (world-writable files in a sticky directory).

Which GPUs: those in ``$CUDA_VISIBLE_DEVICES`` (a pool set aside for this user), else those
``nvidia-smi -L`` lists. ``$GMSOP_NUM_GPUS`` forces a count: the first that many of the pool, or
0..n-1 without one. Nothing is claimed (and ``CUDA_VISIBLE_DEVICES`` is left alone) for ``n == 0``,
without GPUs, with ``GMSOP_GPU_SLOTS=off``, or in a SLURM job that SLURM gave no more GPUs than
asked for; inside a larger SLURM allocation the slots are that allocation's own.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import time

__all__ = ["claim_gpus", "visible_gpus", "job_device", "main"]

ENV_LOCK_DIR, ENV_NUM_GPUS, ENV_DISABLE = "GMSOP_GPU_LOCK_DIR", "GMSOP_NUM_GPUS", "GMSOP_GPU_SLOTS"
DEFAULT_LOCK_DIR = "/tmp/gmsop-gpu-locks"

_held: tuple[list[str], list[int]] | None = None  # (devices, lock descriptors) of this process's claim


def _pool() -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of ids (CUDA ignores everything from the first invalid
    entry on, e.g. ``-1``); None when it is not set."""
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return None
    out = []
    for v in os.environ["CUDA_VISIBLE_DEVICES"].split(","):
        v = v.strip()
        if not v or v.startswith("-") or v in ("none", "NoDevFiles"):
            break
        out.append(v)
    return out


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
    exe = shutil.which("nvidia-smi")
    try:
        listing = (
            subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30).stdout if exe else ""
        )
    except (OSError, subprocess.SubprocessError):
        listing = ""
    return [str(i) for i in range(len(re.findall(r"(?m)^GPU \d+:", listing)))]


def _lock_file(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # let other users lock it too
    return fd


def claim_gpus(n: int = 1, *, timeout: float | None = None) -> list[str]:
    """Claim ``n`` free GPUs for the rest of this process and point CUDA_VISIBLE_DEVICES at them.

    Returns the claimed ids, ``[]`` where it stands aside (module doc); a second call returns the
    first one's. Waits while too few are free (``timeout`` seconds, then TimeoutError).
    """
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
            "gmsop.gpu_slots: torch already initialised CUDA in this process, so "
            "CUDA_VISIBLE_DEVICES can no longer take effect; claim the GPU before using "
            "torch.cuda"
        )
    directory = os.environ.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR
    if os.environ.get("SLURM_JOB_ID"):  # inside an allocation: its device ids are its own
        directory = os.path.join(directory, f"slurm-{os.environ['SLURM_JOB_ID']}")
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o1777)  # shared by users, like /tmp
    host = socket.gethostname().split(".")[0] or "localhost"
    start, said = time.monotonic(), False
    offset = os.getpid() % len(pool)  # simultaneous starters rarely probe the same file first
    while True:
        got: dict[str, int] = {}
        for dev in pool[offset:] + pool[:offset]:
            fd = _lock_file(os.path.join(directory, re.sub(r"[^\w.-]", "_", f"{host}-gpu{dev}.lock")))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            got[dev] = fd
            if len(got) == n:
                break
        if len(got) == n:
            break
        for fd in got.values():  # too few free: hold nothing while waiting
            os.close(fd)
        if timeout is not None and time.monotonic() - start >= timeout:
            raise TimeoutError(f"no {n} free GPU slot(s) of {pool} in {directory} after {timeout:g} s")
        if not said:
            print(
                f"gmsop.gpu_slots: all {len(pool)} GPU slot(s) in {directory} busy; waiting", file=sys.stderr
            )
            said = True
        time.sleep(0.2)
    devices = sorted(got, key=pool.index)
    for fd in got.values():  # who holds it, for people looking at the lock dir
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} host={host} since={time.time():.0f}\n".encode(), 0)
    _held = devices, list(got.values())
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    print(
        f"gmsop.gpu_slots: CUDA_VISIBLE_DEVICES={','.join(devices)} (locks in {directory})", file=sys.stderr
    )
    return devices


def job_device(device: str, gpus_per_job: int, visible: int | None = None) -> tuple[str, str]:
    """The device a workflow job trains on, from the config's ``device`` and ``gpus_per_job``, and
    a note for its log ("" when there is nothing to say). ``visible``: GPUs on this machine (None:
    :func:`visible_gpus`, looked up only when the note needs it).

    A job uses a GPU only if it reserved one: with ``gpus_per_job: 0`` Snakemake schedules jobs by
    cores alone, so ``auto`` means the CPU there (else every parallel job would pile onto cuda:0).
    ``cuda`` with ``gpus_per_job: 0`` is an explicit choice to share the visible GPU(s). With
    ``gpus_per_job >= 1``, ``auto`` stays auto: the GPU :func:`claim_gpus` gave the job, if any.
    """
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
        ""
        if not visible
        else (
            f"gmsop: device auto with gpus_per_job 0: this job runs on the CPU although {visible} GPU(s) are "
            f"visible; to use them, set gpus_per_job: 1 and run snakemake with --resources gpu=<GPUs> (one GPU "
            f"per job), or device: cuda (jobs share them)"
        )
    )
    return "cpu", note


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
