"""Benchmark suite of the performance work (SOP layer, gated mixture, Table-2 training steps).

Not collected by the default test run (``testpaths = ["tests"]``). Run it with

    python -m pytest benchmarks -p no:cacheprovider --benchmark-only

(settings: see ``benchmarks/_bench.py``). Each test times its candidates side by side and
records the ratios named in the performance issue; a table of them (value, target, met or not)
is printed at the end of the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _bench.REPORT:
        return
    tr = terminalreporter
    tr.section("gmsop performance ratios")
    tr.write_line(_bench.header())
    width = max(len(r.name) for r in _bench.REPORT)
    sections = list(dict.fromkeys(r.section for r in _bench.REPORT))  # first-seen order
    section = None
    for row in sorted(_bench.REPORT, key=lambda r: sections.index(r.section)):
        if row.section != section:
            section = row.section
            tr.write_line("")
            tr.write_line(f"[{section}]")
        status = "" if row.ok is None else ("  met" if row.ok else "  MISSED")
        target = f"target {row.target}" if row.target else ""
        value = f"{row.value:10.3f}" if abs(row.value) >= 1e-3 or row.value == 0 else f"{row.value:10.2e}"
        tr.write_line(f"  {row.name:<{width}}  {value}  {target:<16}{status}  {row.detail}")
