"""Helpers shared by the benchmark suite: device, side-by-side timing, peak memory, FLOPs, report.

Settings (environment variables, all optional):

    GMSOP_BENCH_DEVICE        cpu / cuda (default: cuda when available)
    GMSOP_BENCH_ROUNDS        timed rounds per measurement (default 3 on the CPU, 10 on CUDA)
    GMSOP_BENCH_THREADS       torch intra-op threads on the CPU (default: torch's)
    GMSOP_BENCH_LAYER_BATCHES batches of the SOP-layer grid (default "64,576")
    GMSOP_BENCH_HEAD_BATCH    batch of the mixture-head benchmarks (default 32 CPU / 64 CUDA)
    GMSOP_BENCH_BATCH         batch of the training-step benchmarks (default 16 CPU / 64 CUDA)
    GMSOP_BENCH_STRICT        1: fail a test whose measured ratio misses its target
    GMSOP_BENCH_CLOCK         wall (default) or cpu: process CPU time instead of wall time. On a
                              CPU shared with other jobs, ``GMSOP_BENCH_THREADS=1
                              GMSOP_BENCH_CLOCK=cpu`` measures the work itself (a busy machine
                              stretches wall time and multi-threaded barriers, not CPU time).

Ratios are always measured side by side: each round runs every candidate once, in alternating
order, and a ratio is the median over rounds of the per-round ratio, so a machine shared with
other work slows all candidates of a round alike. Absolute times from a busy machine are noise.
"""

from __future__ import annotations

import os
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


DEVICE = torch.device(
    os.environ.get("GMSOP_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
)
CUDA = DEVICE.type == "cuda"
ROUNDS = _env_int("GMSOP_BENCH_ROUNDS", 10 if CUDA else 3)
STRICT = os.environ.get("GMSOP_BENCH_STRICT", "") not in ("", "0")
CPU_CLOCK = not CUDA and os.environ.get("GMSOP_BENCH_CLOCK", "wall") == "cpu"
clock = time.process_time if CPU_CLOCK else time.perf_counter
if not CUDA and os.environ.get("GMSOP_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["GMSOP_BENCH_THREADS"]))


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize(DEVICE)


# ------------------------------------------------------------------------------------ timing
def side_by_side(
    benchmark, fns: dict[str, Callable[[], object]], rounds: int | None = None
) -> dict[str, float]:
    """Time every candidate once per round, alternating the order; returns median seconds.

    The pytest-benchmark fixture times the whole round (all candidates), so its table shows
    the round time; per-candidate medians and per-round ratios go to ``benchmark.extra_info``.
    The first candidate is the reference of the ratios (``ratio:<name>`` = time(name) / time(first)).
    """
    rounds = rounds or ROUNDS
    names = list(fns)
    for f in fns.values():  # warm-up: allocator, caches, lazily built indices
        f()
    sync()
    times: dict[str, list[float]] = {n: [] for n in names}

    def one_round():
        order = names if len(times[names[0]]) % 2 == 0 else names[::-1]
        for n in order:
            sync()
            t0 = clock()
            fns[n]()
            sync()
            times[n].append(clock() - t0)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    med = {n: statistics.median(v) for n, v in times.items()}
    for n in names:
        benchmark.extra_info[f"time_s:{n}"] = med[n]
        benchmark.extra_info[f"ratio:{n}"] = statistics.median(
            a / b for a, b in zip(times[n], times[names[0]])
        )
    return med


def ratio(benchmark, name: str, base: str | None = None) -> float:
    """Median per-round time(name) / time(base) (base: the first candidate)."""
    r = benchmark.extra_info[f"ratio:{name}"]
    return r if base is None else r / benchmark.extra_info[f"ratio:{base}"]


# ------------------------------------------------------------------------------------ memory
class _StorageTracker(TorchDispatchMode):
    """Bytes of tensor storages created by ops under the mode and still alive; peak of that."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._live:
                    nbytes = storage.nbytes()
                    self._live.add(key)
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key, nbytes)
        return out


def peak_memory(fn: Callable[[], object]) -> tuple[int, int]:
    """(peak bytes allocated while ``fn`` ran, bytes still held when its forward returned).

    ``fn`` must return a callable that runs the backward (so the memory held between forward
    and backward, the saved activations, is measured too). CUDA: the caching allocator's
    counters; CPU: a dispatch mode that tracks every storage an op creates.
    """
    if CUDA:
        sync()
        torch.cuda.reset_peak_memory_stats(DEVICE)
        base = torch.cuda.memory_allocated(DEVICE)
        backward = fn()
        sync()
        held = torch.cuda.memory_allocated(DEVICE) - base
        backward()
        sync()
        return torch.cuda.max_memory_allocated(DEVICE) - base, held
    with _StorageTracker() as tracker:
        backward = fn()
        held = tracker.current
        backward()
    return tracker.peak, held


# ------------------------------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], object]) -> int:
    """Matmul/convolution FLOPs (2 per multiply-add) executed by ``fn`` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


_PEAK: dict[str, float] = {}


def matmul_peak_flops() -> float:
    """The machine's measured float32 matmul rate (FLOP/s): best of a few 2048^2 (4096^2 on CUDA) GEMMs."""
    if "peak" not in _PEAK:
        n = 4096 if CUDA else 2048
        a = torch.randn(n, n, device=DEVICE)
        b = torch.randn(n, n, device=DEVICE)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(5):
            sync()
            t0 = clock()
            torch.mm(a, b)
            sync()
            best = min(best, clock() - t0)
        _PEAK["peak"] = 2 * n**3 / best
    return _PEAK["peak"]


# ------------------------------------------------------------------------------------ report
@dataclass
class Row:
    section: str
    name: str
    value: float
    target: str  # e.g. ">= 1.5", "<= 1.15", "" (information only)
    detail: str = ""

    @property
    def ok(self) -> bool | None:
        if not self.target:
            return None
        op, bound = self.target.split()
        return self.value >= float(bound) if op == ">=" else self.value <= float(bound)


REPORT: list[Row] = []


def record(section: str, name: str, value: float, target: str = "", detail: str = "") -> Row:
    row = Row(section, name, float(value), target, detail)
    REPORT.append(row)
    if STRICT and row.ok is False:
        raise AssertionError(f"{section}: {name} = {value:.3f} misses its target {target} ({detail})")
    return row


def header() -> str:
    threads = torch.get_num_threads() if not CUDA else "-"
    name = torch.cuda.get_device_name(DEVICE) if CUDA else f"CPU, {threads} threads"
    clock_name = "process CPU time" if CPU_CLOCK else "wall time"
    return f"device {DEVICE} ({name}), torch {torch.__version__}, rounds {ROUNDS}, {clock_name}"
