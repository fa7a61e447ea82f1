"""Run the parts of ``gmsop check-device`` one after another, each within its share of the time.

Why a runner of its own: the check exists to settle the CUDA path on a GPU lent for a few
minutes, so it must (a) end in time whatever a part does, (b) keep what finished parts found
if it is killed, and (c) never let one broken part hide the others. Hence:

* **Time.** The whole run has ``total_s`` seconds. Before each part starts it is given its
  share of what is left: ``(deadline - now - reserve) * weight / (weights of the parts not yet
  run)``, so time a fast part leaves over goes to the later ones and a part that overran
  shrinks them, and the sum can never exceed the total. The bound is enforced twice:

  1. cooperatively: a part calls ``run.budget.check(what)`` between its steps (one variant,
     one chunk of training steps, one matmul size); past its deadline this raises
     :class:`PartTimedOut`, and subprocesses get ``timeout=run.budget.remaining()``;
  2. as a hard stop: a ``SIGALRM`` timer (main thread, POSIX) raises the same exception at
     the part's deadline plus a grace (``reserve``: 5% of the total, at most 15 s), for a step
     that takes longer than expected. The signal lands when control returns to Python, so
     one CUDA kernel or C call cannot be cut short (a hung kernel still hangs the process).

  The last part's hard stop falls at ``deadline - reserve + reserve``, i.e. at the total:
  wall time is bounded by the budget plus the time to write the two report files.
  A part that ran out of time is reported ``failed`` with reason ``timed out ...`` and the
  figures it had recorded so far (parts record figures as they go).
* **Isolation.** An exception in a part becomes its ``failed`` verdict with the last lines
  of the traceback as the reason; the next part runs regardless.
* **Records.** After every part the JSON report is rewritten atomically
  (``gmsop.atomic.atomic_write_json``), so a killed run leaves every finished part on disk,
  the rest marked ``pending``.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Part", "PartRun", "Budget", "PartTimedOut", "PartSkipped", "run_parts", "shares", "traceback_tail",
    "STATUSES", "reserve_s",
]

STATUSES = ("passed", "failed", "skipped")


class PartTimedOut(BaseException):
    """A part went past its deadline (raised by ``Budget.check`` or by the hard-stop timer).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way (a
    part's per-variant handler, a library's) swallows it: it reaches the runner."""


class PartSkipped(Exception):
    """A part cannot run here (no CUDA, no snakemake, ...); the message is the reason."""


class Budget:
    """The deadline of one part, on the monotonic clock."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = max(0.0, float(seconds))
        self._clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self._clock() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def check(self, what: str) -> None:
        """Raise :class:`PartTimedOut` naming ``what`` when the deadline has passed."""
        if self.remaining() <= 0:
            raise PartTimedOut(f"timed out after {self.elapsed():.1f} s (budget {self.seconds:.1f} s) before {what}")


@dataclass(frozen=True)
class Part:
    """One check: ``fn(ctx, run)`` does the work, records into ``run.figures``, calls
    ``run.fail(...)`` for each problem found and returns (or raises PartSkipped)."""

    name: str
    fn: Callable[[Any, "PartRun"], None]
    weight: float  # share of the time budget, relative to the other parts
    help: str


@dataclass
class PartRun:
    """What a running part reports: figures, failures, a one-line summary, progress notes."""

    name: str
    budget: Budget
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    summary: str = ""
    echo: Callable[[str], None] = print

    def fail(self, reason: str) -> None:
        """Record a problem; the part goes on and is reported failed at the end."""
        self.failures.append(reason)
        self.note(f"problem: {reason}")

    def skip(self, reason: str) -> None:
        raise PartSkipped(reason)

    def note(self, message: str) -> None:
        """A progress line while the part runs (long parts print one per step)."""
        self.echo(f"  ... {self.name}: {message}")


def reserve_s(total_s: float) -> float:
    """Seconds held back from the parts: the hard stop's grace (5% of the total, at most 15 s)."""
    return min(15.0, 0.05 * total_s)


def shares(weights: Sequence[float], left_s: float) -> float:
    """The first part's share of ``left_s`` seconds among parts of these ``weights``."""
    total = float(sum(weights))
    return max(0.0, left_s) * (weights[0] / total if total > 0 else 1.0)


def traceback_tail(exc: BaseException, lines: int = 6) -> str:
    """The last ``lines`` lines of the formatted traceback: where it failed and the message."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _hard_stop(seconds: float, message: str) -> Iterator[bool]:
    """Raise PartTimedOut(message) in this thread after ``seconds`` (SIGALRM); yields whether armed."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield False
        return

    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise PartTimedOut(message)

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _status_line(record: dict[str, Any]) -> str:
    """``PASSED   name   detail (12.3 s)``; a traceback shows its last line, the exception."""
    text = record["summary"] if record["status"] == "passed" else record["reason"]
    lines = (text or "").strip().splitlines()
    detail = lines[-1] if lines else ""
    return f"{record['status'].upper():<8} {record['name']:<16} {detail} ({record['duration_s']:.1f} s)"


def _run_one(part: Part, ctx: Any, share_s: float, grace_s: float, echo: Callable[[str], None]) -> dict[str, Any]:
    run = PartRun(part.name, Budget(share_s), echo=echo)
    status, reason = "passed", ""
    t0 = time.monotonic()
    if share_s <= 0:
        status, reason = "failed", "timed out before it started: the earlier parts used the whole time budget"
    else:
        hard = (f"timed out: hard stop {share_s + grace_s:.1f} s after the start "
                f"(budget {share_s:.1f} s + {grace_s:.1f} s grace)")
        try:
            with _hard_stop(share_s + grace_s, hard):
                part.fn(ctx, run)
        except PartSkipped as exc:
            status, reason = "skipped", str(exc) or "skipped"
        except PartTimedOut as exc:
            status, reason = "failed", f"{exc}; finished before that: {run.summary or 'nothing reported'}"
        except Exception as exc:  # noqa: BLE001 - a broken part must not stop the others
            status, reason = "failed", traceback_tail(exc)
        finally:
            _after_part()
    if run.failures:  # problems found on the way come first; a later timeout or error follows
        status, reason = "failed", "; ".join(run.failures) + (f"; {reason}" if reason else "")
    return {
        "name": part.name,
        "status": status,
        "reason": reason,
        "summary": run.summary,
        "duration_s": round(time.monotonic() - t0, 3),
        "budget_s": round(share_s, 3),
        "figures": run.figures,
    }


def _after_part() -> None:
    """Undo process-wide switches a part may have left on when it was cut short."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with contextlib.suppress(Exception):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.empty_cache()


def run_parts(
    parts: Sequence[Part],
    ctx: Any,
    total_s: float,
    on_record: Callable[[list[dict[str, Any]]], None] | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run ``parts`` in order within ``total_s`` seconds (see the module docstring).

    ``on_record(records)`` is called before the first part (all ``pending``) and after every
    part, with one record per part; the return value is the final list. With ``total_s <= 0``
    every part is reported failed without being started.
    """
    start = time.monotonic()
    grace = reserve_s(max(0.0, total_s))  # nothing left (start-up ate it): every part fails unstarted
    deadline = start + total_s - grace
    records = [{"name": p.name, "status": "pending", "reason": "", "summary": "", "duration_s": 0.0,
                "budget_s": None, "figures": {}} for p in parts]
    if on_record:
        on_record(records)
    for i, part in enumerate(parts):
        share = shares([p.weight for p in parts[i:]], deadline - time.monotonic())
        records[i] = _run_one(part, ctx, share, grace, echo)
        echo(_status_line(records[i]))
        if on_record:
            on_record(records)
    return records
