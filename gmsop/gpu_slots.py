"""One GPU per job when several jobs share one machine: a per-GPU lock taken before CUDA starts.

Snakemake's ``--resources gpu=N`` only limits how many GPU jobs run at once; it never tells a job
*which* GPU to use (it sets no ``CUDA_VISIBLE_DEVICES``), so N parallel training jobs would all
land on ``cuda:0``. Each job therefore claims a free GPU here, before torch initialises CUDA::

    from gmsop.gpu_slots import claim_gpus
    claim_gpus(1)          # sets CUDA_VISIBLE_DEVICES to a free GPU, holds it until the process exits
    import torch           # (importing torch earlier is fine; *using* torch.cuda is not)

or, for a block of code, ``with gpu_slot(1) as devices: ...``, or, around any command,
``python -m gmsop.gpu_slots -n 1 -- python train.py ...``.

A slot is an exclusive ``fcntl.flock`` on ``<lock dir>/<host>-gpu<id>.lock``. The kernel drops
the lock when the holder exits, however it exits (``kill -9`` and crashes included), so there is
nothing to clean up and no stale state. When every GPU is taken the call waits for one to free.

Which GPUs: the devices listed in ``$CUDA_VISIBLE_DEVICES`` (a pool this machine's user set
aside; the job gets some of them), else ``nvidia-smi -L``, else ``/proc/driver/nvidia/gpus``. A
count (an explicit ``num_gpus``, else ``$GMSOP_NUM_GPUS``) takes the first that many of the
visible pool (never ids outside it), or 0..n-1 when no pool is set. Lock dir: ``lock_dir``, else
``$GMSOP_GPU_LOCK_DIR``, else ``/tmp/gmsop-gpu-locks``; it must be local to the machine
(it may be shared by several users: files are created world-writable in a sticky directory).

Nothing happens (and ``CUDA_VISIBLE_DEVICES`` is left alone) when ``n == 0``, when the machine
has no GPUs, when ``$GMSOP_GPU_SLOTS`` is ``0``/``off``, or inside a SLURM job whose
``CUDA_VISIBLE_DEVICES`` the scheduler set to no more GPUs than requested (SLURM already gave
this job its own GPUs). Inside a larger SLURM allocation (``salloc --gpus=4`` then a local
``snakemake --resources gpu=4``) slots are shared among that allocation's jobs only.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

__all__ = ["GpuClaim", "claim_gpus", "gpu_slot", "release_gpus", "visible_gpus", "lock_dir", "job_device", "main"]

ENV_LOCK_DIR = "GMSOP_GPU_LOCK_DIR"
ENV_NUM_GPUS = "GMSOP_NUM_GPUS"
ENV_DISABLE = "GMSOP_GPU_SLOTS"
DEFAULT_LOCK_DIR = "/tmp/gmsop-gpu-locks"

_CLAIM: GpuClaim | None = None  # the process-lifetime claim of claim_gpus()


@dataclass
class GpuClaim:
    """GPUs this process holds. ``devices`` are the ids written to CUDA_VISIBLE_DEVICES
    (empty when the allocator did nothing, see ``reason``)."""

    devices: list[str]
    lock_files: list[str] = field(default_factory=list)
    reason: str = ""
    _fds: list[int] = field(default_factory=list, repr=False)
    _previous_env: str | None = field(default=None, repr=False)
    _set_env: bool = field(default=False, repr=False)

    @property
    def active(self) -> bool:
        return bool(self._fds)

    def release(self, restore_env: bool = True) -> None:
        """Drop the locks (and put CUDA_VISIBLE_DEVICES back as it was)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor releases the flock
        self._fds = []
        if restore_env and self._set_env:
            if self._previous_env is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = self._previous_env
            self._set_env = False


def lock_dir(path: str | os.PathLike | None = None) -> str:
    return os.fspath(path or os.environ.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR)


def _parse_visible(value: str) -> list[str]:
    value = value.strip()
    if value in ("", "-1", "none", "NoDevFiles"):
        return []
    items = [v.strip() for v in value.split(",")]
    out = []
    for v in items:
        # CUDA stops at the first invalid entry (e.g. -1): everything after it is hidden
        if not v or v.startswith("-"):
            break
        out.append(v)
    return out


def _count_nvidia_smi() -> int | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return 0
    return sum(1 for line in res.stdout.splitlines() if re.match(r"\s*GPU \d+:", line))


def _count_proc() -> int:
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def visible_gpus(num_gpus: int | None = None) -> list[str]:
    """The GPU ids a job may choose from, without initialising CUDA (see the module doc)."""
    if num_gpus is None and os.environ.get(ENV_NUM_GPUS, "").strip():
        num_gpus = int(os.environ[ENV_NUM_GPUS])
    pool = _parse_visible(os.environ["CUDA_VISIBLE_DEVICES"]) if "CUDA_VISIBLE_DEVICES" in os.environ else None
    if num_gpus is not None:
        if num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
        if pool is None:
            return [str(i) for i in range(num_gpus)]
        # a count within a pool set aside with CUDA_VISIBLE_DEVICES (e.g. 4,5,6,7): its first
        # num_gpus ids, never 0..n-1 (those would be other users' GPUs)
        if num_gpus > len(pool):
            raise ValueError(f"num_gpus={num_gpus} but CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} "
                             f"names only {len(pool)} GPU(s)")
        return pool[:num_gpus]
    if pool is not None:
        return pool
    n = _count_nvidia_smi()
    if n is None:
        n = _count_proc()
    return [str(i) for i in range(n)]


def _disabled_reason(n: int, pool: list[str]) -> str | None:
    if n == 0:
        return "no GPU requested"
    if os.environ.get(ENV_DISABLE, "").strip().lower() in ("0", "off", "no", "false"):
        return f"disabled by {ENV_DISABLE}"
    if not pool:
        return "no GPUs on this machine"
    if os.environ.get("SLURM_JOB_ID") and "CUDA_VISIBLE_DEVICES" in os.environ and len(pool) <= n:
        return "GPUs assigned by SLURM"
    return None


def _cuda_already_initialised() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    with contextlib.suppress(Exception):
        return bool(torch.cuda.is_initialized())
    return False


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def _open_lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # let other users lock it too (only works for its owner)
    return fd


def _make_dir(path: str) -> None:
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o1777)  # shared by users, like /tmp


def _acquire(
    n: int,
    pool: list[str],
    directory: str,
    timeout: float | None,
    poll: float,
    quiet: bool,
) -> tuple[list[str], list[str], list[int]]:
    host = _safe(socket.gethostname().split(".")[0] or "localhost")
    if os.environ.get("SLURM_JOB_ID"):  # inside an allocation: its device ids are its own
        directory = os.path.join(directory, f"slurm-{_safe(os.environ['SLURM_JOB_ID'])}")
    _make_dir(directory)
    paths = {dev: os.path.join(directory, f"{host}-gpu{_safe(dev)}.lock") for dev in pool}
    start = time.monotonic()
    said_waiting = False
    # start the scan at a pid-dependent slot, so simultaneous starters rarely probe the same file
    offset = os.getpid() % len(pool)
    order = pool[offset:] + pool[:offset]
    while True:
        got: list[tuple[str, int]] = []
        for dev in order:
            fd = _open_lock(paths[dev])
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                continue
            got.append((dev, fd))
            if len(got) == n:
                break
        if len(got) == n:
            devices = sorted((d for d, _ in got), key=pool.index)
            fds = [fd for _, fd in got]
            for _, fd in got:  # who holds it, for people looking at the lock dir
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"pid={os.getpid()} host={host} since={time.time():.0f}\n".encode(), 0)
            return devices, [paths[d] for d in devices], fds
        for _, fd in got:  # not enough free: give back the partial set and wait
            os.close(fd)
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise TimeoutError(f"no {n} free GPU slot(s) of {pool} in {directory} after {waited:.1f} s")
        if not said_waiting and not quiet:
            print(f"gmsop.gpu_slots: all {len(pool)} GPU slot(s) in {directory} busy; waiting", file=sys.stderr)
            said_waiting = True
        time.sleep(poll)


def _claim(
    n: int,
    num_gpus: int | None,
    lock_directory: str | os.PathLike | None,
    timeout: float | None,
    poll: float,
    quiet: bool,
) -> GpuClaim:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = visible_gpus(num_gpus) if n else []
    reason = _disabled_reason(n, pool)
    if reason:
        return GpuClaim(devices=[], reason=reason)
    if n > len(pool):
        raise ValueError(f"{n} GPU(s) requested per job but only {len(pool)} visible: {pool}")
    if _cuda_already_initialised():
        raise RuntimeError(
            "gmsop.gpu_slots: torch already initialised CUDA in this process, so CUDA_VISIBLE_DEVICES "
            "can no longer take effect; claim the GPU before the first torch.cuda call"
        )
    directory = lock_dir(lock_directory)
    devices, files, fds = _acquire(n, pool, directory, timeout, poll, quiet)
    claim = GpuClaim(
        devices=devices,
        lock_files=files,
        reason="claimed",
        _fds=fds,
        _previous_env=os.environ.get("CUDA_VISIBLE_DEVICES"),
        _set_env=True,
    )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    if not quiet:
        print(f"gmsop.gpu_slots: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} (locks: {', '.join(files)})",
              file=sys.stderr)
    return claim


def claim_gpus(
    n: int = 1,
    *,
    num_gpus: int | None = None,
    lock_directory: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
    quiet: bool = False,
) -> GpuClaim:
    """Claim ``n`` free GPUs for the rest of this process and point CUDA_VISIBLE_DEVICES at them.

    Call it at the start of a training/benchmark job, before anything touches ``torch.cuda``.
    Calling it again returns the same claim. Blocks while all GPUs are taken (``timeout`` in
    seconds raises TimeoutError instead). Returns a GpuClaim; ``claim.devices`` is empty when the
    allocator stood aside (``claim.reason`` says why).
    """
    global _CLAIM
    if _CLAIM is not None and _CLAIM.active:
        return _CLAIM
    _CLAIM = _claim(n, num_gpus, lock_directory, timeout, poll, quiet)
    return _CLAIM


def job_device(device: str, gpus_per_job: int, visible: int | None = None) -> tuple[str, str]:
    """The device a workflow job trains on, from the config's ``device`` and ``gpus_per_job``, and
    a note for its log ("" when there is nothing to say). ``visible``: GPUs on this machine (None:
    :func:`visible_gpus`, only looked up when the note needs it).

    A job uses a GPU only if it reserved one: with ``gpus_per_job: 0`` Snakemake schedules the job
    by cores alone, so ``device: auto`` means the CPU there. Otherwise every parallel job of a plain
    ``snakemake`` (all cores) would put itself on cuda:0, unscheduled. ``device: cuda`` with
    ``gpus_per_job: 0`` is kept as an explicit choice to share the visible GPU(s) (the jobs all
    start on the first one). With ``gpus_per_job >= 1``, ``auto`` stays auto: CUDA on the GPU
    :func:`claim_gpus` gave the job, the CPU on a machine without one. ``cpu`` is always the CPU.
    """
    device = str(device).strip().lower()
    if gpus_per_job < 0:
        raise ValueError(f"gpus_per_job must be >= 0, got {gpus_per_job}")
    if gpus_per_job >= 1 or device not in ("auto", "cuda"):
        return device, ""
    if device == "cuda":
        return "cuda", ("gmsop: device cuda with gpus_per_job 0: this job reserved no GPU and shares the visible "
                        "one(s) with every other job")
    if visible is None:
        try:
            visible = len(visible_gpus())
        except ValueError:  # a GMSOP_NUM_GPUS beyond the pool: claim_gpus reports it where it matters
            visible = 0
    n = int(visible)
    note = "" if n == 0 else (
        f"gmsop: device auto with gpus_per_job 0: this job runs on the CPU although {n} GPU(s) are visible; to use "
        f"them, set gpus_per_job: 1 and run snakemake with --resources gpu=<GPUs> (one GPU per job), or device: cuda "
        f"(jobs share them)")
    return "cpu", note


def release_gpus() -> None:
    """Give back claim_gpus()'s GPUs before the process ends (normally not needed)."""
    global _CLAIM
    if _CLAIM is not None:
        _CLAIM.release()
    _CLAIM = None


@contextlib.contextmanager
def gpu_slot(
    n: int = 1,
    *,
    num_gpus: int | None = None,
    lock_directory: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
    quiet: bool = False,
):
    """``with gpu_slot(1) as claim:`` holds ``claim.devices`` for the block, then restores
    CUDA_VISIBLE_DEVICES. (CUDA reads the variable once per process: use one block per process.)"""
    claim = _claim(n, num_gpus, lock_directory, timeout, poll, quiet)
    try:
        yield claim
    finally:
        claim.release()


def main(argv: list[str] | None = None) -> int:
    """``python -m gmsop.gpu_slots [-n N] -- COMMAND ...``: run COMMAND on N free GPUs.

    The command replaces this process (exec) and inherits the locks, so they are held exactly as
    long as the command runs.
    """
    p = argparse.ArgumentParser(prog="python -m gmsop.gpu_slots", description=main.__doc__)
    p.add_argument("-n", "--gpus", type=int, default=1, help="GPUs per job (default 1; 0: run as is)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs on this machine (default: detect)")
    p.add_argument("--lock-dir", default=None, help=f"default ${ENV_LOCK_DIR} or {DEFAULT_LOCK_DIR}")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command given (usage: python -m gmsop.gpu_slots -n 1 -- COMMAND ...)")
    claim = claim_gpus(args.gpus, num_gpus=args.num_gpus, lock_directory=args.lock_dir,
                       timeout=args.timeout, quiet=args.quiet)
    for fd in claim._fds:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"gmsop.gpu_slots: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
