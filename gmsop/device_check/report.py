"""The two files of ``gmsop check-device``: ``device_check.json`` for machines, ``.md`` for people.

The JSON is rewritten (atomically) after every part, so it is always a complete document:
``complete`` is false and unfinished parts are ``pending`` until the run ends. Figures are
whatever a part recorded; a non-finite number (a NaN loss is a finding here, not a bug) is
written as the string ``"nan"``/``"inf"``, since ``gmsop.atomic`` writes strict JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gmsop.atomic import atomic_write, atomic_write_json

__all__ = ["FORMAT", "JSON_NAME", "MD_NAME", "document", "write_json", "write_markdown", "verdict"]

FORMAT = "gmsop-device-check/1"
JSON_NAME, MD_NAME = "device_check.json", "device_check.md"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def verdict(records: list[dict[str, Any]]) -> str:
    """``failed`` if any part failed, ``incomplete`` while any is pending, else ``passed``."""
    statuses = {r["status"] for r in records}
    return "failed" if "failed" in statuses else ("incomplete" if "pending" in statuses else "passed")


def document(header: dict[str, Any], records: list[dict[str, Any]], wall_s: float, complete: bool) -> dict[str, Any]:
    return _finite({
        "format": FORMAT,
        **header,
        "complete": complete,
        "verdict": verdict(records),
        "wall_s": round(wall_s, 3),
        "counts": {s: sum(r["status"] == s for r in records) for s in ("passed", "failed", "skipped", "pending")},
        "parts": records,
    })


def write_json(out_dir: Path, doc: dict[str, Any]) -> Path:
    return atomic_write_json(out_dir / JSON_NAME, doc)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        v = json.dumps(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return lines


def _figures(figures: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    tables = []
    for key, value in figures.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append((key, [{"": k, **v} for k, v in value.items()]))
        else:
            lines.append(f"- {key}: {_cell(value)}")
    for key, rows in tables:
        lines += ["", f"{key}:", "", *_table(rows)]
    return lines


def write_markdown(out_dir: Path, doc: dict[str, Any]) -> Path:
    env = doc.get("env", {})
    lines = [
        f"# gmsop check-device: {doc['verdict'].upper()}",
        "",
        f"- device: {env.get('device')} ({env.get('device_name')}), torch {env.get('torch_build')}, "
        f"CUDA {env.get('cuda')}, Python {env.get('python')}, gmsop {env.get('gmsop')}",
        f"- options: {_cell(doc.get('options'))}",
        f"- started {doc.get('started')}, wall time {doc['wall_s']:.1f} s of a {doc['options']['time_budget_s']:g} s budget",
        "",
        "| part | status | time (s) | budget (s) | detail |",
        "|---|---|---|---|---|",
    ]
    for r in doc["parts"]:
        text = r["summary"] if r["status"] == "passed" else r["reason"]
        budget = f"{r['budget_s']:.0f}" if isinstance(r.get("budget_s"), (int, float)) else ""
        lines.append(f"| {r['name']} | {r['status']} | {r['duration_s']:.1f} | {budget} | "
                     f"{_cell((text or '').strip().splitlines()[-1] if text else '')} |")
    for r in doc["parts"]:
        lines += ["", f"## {r['name']}: {r['status']}", ""]
        if r["reason"]:
            lines += ["```", r["reason"].strip(), "```", ""]
        if r["summary"]:
            lines += [r["summary"], ""]
        lines += _figures(r["figures"])
    return atomic_write(out_dir / MD_NAME, "\n".join(lines) + "\n")
