"""Every file the engine writes and aggregation reads, declared once, with its format version.

The engine (``gmsop.engine``) and the reporting side (``gmsop.aggregate``) meet only in files,
so both sides take the layout from here and it cannot drift:

=====================  ======================================================================
``metrics.json``       one finished training run (:data:`METRICS_FORMAT`): identity, the
                       resolved settings, final errors, one record per epoch
``bench.json``         one throughput benchmark (:data:`BENCH_FORMAT`)
``progress.jsonl``     one epoch record per line (:data:`EPOCH_KEYS`), beside the checkpoint
``last.pt``            the resume checkpoint (:data:`CHECKPOINT_FORMAT`, :data:`CHECKPOINT_KEYS`)
``previous.pt``        the checkpoint before it, kept until a new ``last.pt`` is written and read back
``config.json``        the TrainConfig and fingerprint a checkpoint folder was written for
=====================  ======================================================================

Identity. A workflow run writes a ``run`` block into metrics.json and bench.json::

    "run": {"id": "<run id>", "planned_for": [{"experiment": "table2", "row": "SR-SOP"}],
            "settings": {<the planner's resolved settings>}}

so a table finds its runs by the id in the file, never by the file's path; ``planned_for`` says
which rows asked for the run when it was trained (one run can serve several tables). A run
trained by hand (``gmsop train``) has ``"run": null`` and belongs to no table row. A user's own
rule writes the id ``rule:<rule name>`` (:func:`rule_metrics` builds such a record); the JSON
Schema of both files (:func:`json_schema`) is shipped in ``workflow/schemas/``.

Reading. :func:`read_metrics` / :func:`read_bench` / :func:`read_progress` check the format
version and every declared key; a file of another version, a missing key or a value of the
wrong type raises :class:`ResultFileError` naming the file and the dotted key
(``final.top1_err``, ``epochs[3].val_top1_err``), instead of surfacing later as a NaN in a table.
The trainer checks its own record with the same declaration before writing it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS_FORMAT",
    "BENCH_FORMAT",
    "CHECKPOINT_FORMAT",
    "METRICS_NAME",
    "BENCH_SUFFIX",
    "PROGRESS_NAME",
    "CHECKPOINT_NAME",
    "PREVIOUS_CHECKPOINT_NAME",
    "CONFIG_NAME",
    "CHECKPOINT_KEYS",
    "EPOCH_KEYS",
    "TIMING_KEYS",
    "ResultFileError",
    "run_block",
    "check_run_block",
    "check_metrics",
    "check_bench",
    "read_metrics",
    "read_bench",
    "bench_files",
    "read_progress",
    "json_schema",
    "rule_metrics",
    "rule_run_id",
    "read_rule_metrics",
    "RUN_METRICS_PATH",
    "RULE_METRICS_PATH",
    "CHECKED_METRICS_PATH",
    "CHECKPOINT_DIR",
    "BENCH_DIR",
    "DATASET_INFO_PATH",
    "IDENTITIES_PATH",
]

#: Version of metrics.json. 2: the ``run`` identity block and ``format_version`` itself.
METRICS_FORMAT = 2
#: Version of bench.json. 2: the ``run`` identity block and ``format_version`` itself.
BENCH_FORMAT = 2
#: Version of the checkpoint ``last.pt``; a different value is refused on resume.
CHECKPOINT_FORMAT = 1

METRICS_NAME = "metrics.json"
BENCH_SUFFIX = ".json"
PROGRESS_NAME = "progress.jsonl"
CHECKPOINT_NAME = "last.pt"
PREVIOUS_CHECKPOINT_NAME = "previous.pt"
CONFIG_NAME = "config.json"

# Where the workflow keeps each result, as Snakemake patterns (wildcards in braces): the rules use
# them as they are, ``gmsop.experiments.Row`` fills them in. One definition for both.
RUN_METRICS_PATH = "results/runs/{run}/seed{seed}/" + METRICS_NAME
RULE_METRICS_PATH = "results/rules/{rulename}/seed{seed}/" + METRICS_NAME  # a user's rule writes it
CHECKED_METRICS_PATH = "results/checked/{rulename}/seed{seed}/" + METRICS_NAME  # its checked copy
CHECKPOINT_DIR = "results/checkpoints/{run}/seed{seed}"
BENCH_DIR = "results/bench/{experiment}"  # holds {bench}.json (BENCH_SUFFIX) per network shown
DATASET_INFO_PATH = "results/data/{dataset}.json"  # a prepared dataset's shape and classes
IDENTITIES_PATH = "results/plan/identities-{config}.json"  # every job's run block, per config hash

#: Keys every checkpoint holds besides ``format`` (gmsop.engine.checkpoint says what each is).
CHECKPOINT_KEYS = ("fingerprint", "epoch", "model", "optimizer", "rng", "records", "totals")

#: Keys of one epoch record, in the order metrics.json and progress.jsonl show them.
EPOCH_KEYS = (
    "epoch",
    "lr",
    "train_ce",
    "train_balance",
    "train_loss",
    "train_top1_err",
    "val_top1_err",
    "val_top5_err",
    "epoch_time_s",
    "train_img_s",
    "routing_counts",
    "importance",
    "gate_logit_spread",
    "gate_noise_spread",
    "distinct_topk_mean",
    "distinct_topk_min",
    "idle_components_mean",
    "idle_components_max",
)
#: Keys that measure time (they differ between otherwise identical runs).
TIMING_KEYS = ("epoch_time_s", "train_img_s", "train_time_s")

PathLike = str | os.PathLike


class ResultFileError(ValueError):
    """A result file is unreadable, of another format version, lacks a key, or holds a value of
    the wrong type."""

    def __init__(self, path: PathLike, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


# ---------------------------------------------------------------------------------------------
# The declarations: (key, kind, nullable) per block; required keys must be present.

_KIND_TEXT = {
    "str": "a string",
    "int": "an integer",
    "num": "a number",
    "dict": "an object",
    "list": "a list",
    "int_list": "a list of integers",
    "num_list": "a list of numbers",
}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    # Counts written by a float-happy writer (10350000.0) are fine; 0.5 seeds are not.
    return _is_num(v) and (isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()))


_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "num": _is_num,
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "int_list": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    "num_list": lambda v: isinstance(v, list) and all(_is_num(x) for x in v),
}

_RUN_REQUIRED = [("id", "str", False), ("planned_for", "list", False), ("settings", "dict", False)]
_PLANNED_REQUIRED = [("experiment", "str", False), ("row", "str", False)]

# What every producer writes: the gmsop trainer, or a user's own rule (README "Add a variant").
# The trainer always writes the optional keys too; a foreign method may leave out what
# has no meaning for it (a backbone, a protocol, a representation size).
_METRICS_REQUIRED = [
    ("format_version", "int", False),
    ("run", "dict", True),
    ("variant", "str", False),
    ("dataset", "str", False),
    ("seed", "int", False),
    ("hparams", "dict", False),
    ("final", "dict", True),
    ("epochs", "list", False),
]
_METRICS_OPTIONAL = [
    ("backbone", "str", True),
    ("protocol", "str", True),
    ("params", "int", True),
    ("rep_dim", "int", True),
    ("flops_per_image", "num", True),
    ("env", "dict", True),
    ("tag", "str", True),
]
# num_classes decides whether a run learned (chance error); train_size and epochs say where a
# claim was tested (the scorecard).
_HPARAMS_REQUIRED = [("epochs", "int", False), ("num_classes", "int", False), ("train_size", "int", False)]
_HPARAMS_OPTIONAL = [
    ("batch_size", "int", True),
    ("schedule", "list", True),
    ("width_mult", "num", True),
    ("protocol_switches", "dict", True),
]
_FINAL_REQUIRED = [("top1_err", "num", False), ("top5_err", "num", True), ("epochs", "int", False)]
_FINAL_OPTIONAL = [
    ("train_time_s", "num", True),
    ("train_img_s", "num", True),
    # a gated mixture's last evaluation: images of class c that select component i, images per class
    ("val_routing", "list", True),
    ("val_class_counts", "int_list", True),
]
_EPOCH_REQUIRED = [("epoch", "int", False), ("train_loss", "num", True), ("val_top1_err", "num", True)]
_EPOCH_OPTIONAL = [
    ("lr", "num", True),
    ("train_ce", "num", True),
    ("train_balance", "num", True),
    ("train_top1_err", "num", True),
    ("val_top5_err", "num", True),
    ("epoch_time_s", "num", True),
    ("train_img_s", "num", True),
    ("routing_counts", "num_list", True),
    ("importance", "num_list", True),
    ("gate_logit_spread", "num", True),
    ("gate_noise_spread", "num", True),
    # per training batch of a gated mixture: distinct Top-K sets and idle components, mean and worst
    ("distinct_topk_mean", "num", True),
    ("distinct_topk_min", "int", True),
    ("idle_components_mean", "num", True),
    ("idle_components_max", "int", True),
]
_BENCH_REQUIRED = [
    ("format_version", "int", False),
    ("run", "dict", True),
    ("variant", "str", False),
    ("backbone", "str", False),
    ("input_size", "int_list", False),
    ("batch_size", "int", False),
    ("device", "str", False),
    ("train_img_s", "num", False),
    ("params", "int", False),
]
_BENCH_OPTIONAL = [
    ("num_classes", "int", True),
    ("device_name", "str", True),
    ("train_step_ms_median", "num", True),
    ("train_step_ms_iqr", "num", True),
    ("infer_img_s", "num", True),
    ("peak_mem_mb", "num", True),
    ("flops_per_image", "num", True),
    ("achieved_tflops", "num", True),
    ("env", "dict", True),
    ("tag", "str", True),
]
assert {k for k, _, _ in _EPOCH_REQUIRED + _EPOCH_OPTIONAL} == set(EPOCH_KEYS)

#: Numeric epoch fields (what an epochs frame has one column each for).
EPOCH_NUMBERS = tuple(k for k in EPOCH_KEYS if k not in ("epoch", "routing_counts", "importance"))


def run_block(run_id: str, planned_for: Sequence[Mapping[str, str]], settings: Mapping[str, Any]) -> dict:
    """The ``run`` identity block a workflow job writes into its metrics.json or bench.json."""
    return {
        "id": str(run_id),
        "planned_for": [{"experiment": str(p["experiment"]), "row": str(p["row"])} for p in planned_for],
        "settings": dict(settings),
    }


def _check(path: PathLike, obj: Mapping, prefix: str, required, optional=()) -> None:
    for key, kind, nullable in list(required) + list(optional):
        name = f"{prefix}{key}"
        if key not in obj:
            if (key, kind, nullable) in required:
                raise ResultFileError(path, f"missing required key {name!r}")
            continue
        value = obj[key]
        if value is None:
            if not nullable:
                raise ResultFileError(path, f"key {name!r} must be {_KIND_TEXT[kind]}, got null")
            continue
        if not _CHECKS[kind](value):
            raise ResultFileError(
                path, f"key {name!r} must be {_KIND_TEXT[kind]}, got {value!r} ({type(value).__name__})"
            )


def _check_version(path: PathLike, obj: Mapping, expected: int, what: str) -> None:
    if "format_version" not in obj:
        raise ResultFileError(
            path,
            f"missing required key 'format_version': a {what} written before format "
            f"{expected} (retrain it: snakemake --forcerun train bench)",
        )
    version = obj["format_version"]
    if version != expected:
        raise ResultFileError(
            path, f"key 'format_version' is {version!r}; this gmsop reads {what} format {expected} only"
        )


def check_run_block(run: Mapping | None, path: PathLike = "run") -> None:
    """Validate an identity block (None: a run trained by hand); names the key that is wrong."""
    if run is None:
        return
    _check(path, run, "run.", _RUN_REQUIRED)
    for i, planned in enumerate(run["planned_for"]):
        if not isinstance(planned, dict):
            raise ResultFileError(path, f"key 'run.planned_for[{i}]' must be an object, got {planned!r}")
        _check(path, planned, f"run.planned_for[{i}].", _PLANNED_REQUIRED)


def _check_epoch(path: PathLike, ep: Any, where: str) -> None:
    if not isinstance(ep, dict):
        raise ResultFileError(path, f"{where[:-1]} must be an object, got {type(ep).__name__}")
    _check(path, ep, where, _EPOCH_REQUIRED, _EPOCH_OPTIONAL)
    counts, imp = ep.get("routing_counts"), ep.get("importance")
    if counts is not None and imp is not None and len(counts) != len(imp):
        raise ResultFileError(
            path, f"{where}routing_counts has {len(counts)} entries but {where}importance has {len(imp)}"
        )


def _check_record(path: PathLike, obj: Any, version: int, what: str, required, optional) -> None:
    """The checks metrics.json and bench.json share: an object, its version, its keys, its run block."""
    if not isinstance(obj, dict):
        raise ResultFileError(path, f"expected a JSON object at the top level, got {type(obj).__name__}")
    _check_version(path, obj, version, what)
    _check(path, obj, "", required, optional)
    check_run_block(obj["run"], path)


def check_metrics(obj: Any, path: PathLike = "metrics.json") -> dict:
    """Validate a metrics record (the trainer before writing, :func:`read_metrics` after reading)."""
    _check_record(path, obj, METRICS_FORMAT, "metrics.json", _METRICS_REQUIRED, _METRICS_OPTIONAL)
    _check(path, obj["hparams"], "hparams.", _HPARAMS_REQUIRED, _HPARAMS_OPTIONAL)
    if obj["final"] is not None:
        _check(path, obj["final"], "final.", _FINAL_REQUIRED, _FINAL_OPTIONAL)
    n_components = None
    for i, ep in enumerate(obj["epochs"]):
        where = f"epochs[{i}]."
        _check_epoch(path, ep, where)
        counts = ep.get("routing_counts")
        if counts is not None:
            if n_components is not None and len(counts) != n_components:
                raise ResultFileError(
                    path,
                    f"{where}routing_counts has {len(counts)} components, earlier epochs have {n_components}",
                )
            n_components = len(counts)
    return obj


def check_bench(obj: Any, path: PathLike = "bench.json") -> dict:
    """Validate a bench record (the benchmark before writing, :func:`read_bench` after reading)."""
    _check_record(path, obj, BENCH_FORMAT, "bench.json", _BENCH_REQUIRED, _BENCH_OPTIONAL)
    if len(obj["input_size"]) != 3:
        raise ResultFileError(path, f"key 'input_size' must be [C, H, W], got {obj['input_size']!r}")
    return obj


def _read_json(path: PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ResultFileError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFileError(path, f"not valid JSON ({err})") from None


def read_metrics(path: PathLike) -> dict:
    """Read and validate one ``metrics.json``; returns the parsed object unchanged."""
    return check_metrics(_read_json(path), path)


def read_bench(path: PathLike) -> dict:
    """Read and validate one ``bench.json``; returns the parsed object unchanged."""
    return check_bench(_read_json(path), path)


def bench_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """bench.json files: each path a file, or a folder searched with its subfolders (the
    workflow writes ``results/bench/{experiment}/{bench}.json``), in name order."""
    files: list[Path] = []
    for p in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        files += sorted(p.rglob(f"*{BENCH_SUFFIX}")) if p.is_dir() else [p]
    return files


def read_progress(path: PathLike) -> list[dict]:
    """Read ``progress.jsonl``: one validated epoch record per line (a run in progress)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ResultFileError(path, "file not found") from None
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ResultFileError(path, f"line {i + 1} is not valid JSON ({err})") from None
        _check_epoch(path, rec, f"line {i + 1}: ")
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------
# The same declarations as JSON Schema (workflow/schemas/metrics.schema.json is generated from
# this and a test keeps it equal), for producers outside Python: a user's own rule.

_JSON_TYPES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "num": {"type": "number"},
    "dict": {"type": "object"},
    "list": {"type": "array"},
    "int_list": {"type": "array", "items": {"type": "integer"}},
    "num_list": {"type": "array", "items": {"type": "number"}},
}


def _object(required, optional=(), nested: dict | None = None) -> dict:
    props = {}
    for key, kind, nullable in list(required) + list(optional):
        t = dict(nested.get(key, _JSON_TYPES[kind])) if nested else dict(_JSON_TYPES[kind])
        props[key] = {"anyOf": [t, {"type": "null"}]} if nullable else t
    return {"type": "object", "required": [k for k, _, _ in required], "properties": props}


def json_schema(kind: str = "metrics") -> dict:
    """JSON Schema (draft 2020-12) of ``metrics.json`` or ``bench.json`` at the current version."""
    run = _object(
        _RUN_REQUIRED, nested={"planned_for": {"type": "array", "items": _object(_PLANNED_REQUIRED)}}
    )
    if kind == "metrics":
        version, required, optional = METRICS_FORMAT, _METRICS_REQUIRED, _METRICS_OPTIONAL
        nested = {
            "run": run,
            "hparams": _object(_HPARAMS_REQUIRED, _HPARAMS_OPTIONAL),
            "final": _object(_FINAL_REQUIRED, _FINAL_OPTIONAL),
            "epochs": {"type": "array", "items": _object(_EPOCH_REQUIRED, _EPOCH_OPTIONAL)},
        }
        title = "gmsop metrics.json: one finished run (one seed) of a table row"
    elif kind == "bench":
        version, required, optional, nested = BENCH_FORMAT, _BENCH_REQUIRED, _BENCH_OPTIONAL, {"run": run}
        title = "gmsop bench.json: one throughput benchmark"
    else:
        raise ValueError(f"unknown result file kind {kind!r}; valid: metrics, bench")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": f"Format version {version}, declared in gmsop/formats.py (generated from it).",
        **_object(required, optional, nested),
    }
    schema["properties"]["format_version"] = {"const": version}
    return schema


def rule_metrics(
    rule: str,
    seed: int,
    top1_err: float,
    top5_err: float | None = None,
    *,
    num_classes: int,
    train_size: int,
    dataset: str,
    epochs: list[dict] | None = None,
    variant: str | None = None,
    **extra: Any,
) -> dict:
    """A valid metrics record for a user's own rule (run id ``rule:<rule>``, see README): the final
    errors, the dataset it ran on, and optionally one record per epoch (``epoch``, ``train_loss``,
    ``val_top1_err`` at least); ``extra`` top-level keys (``params``, ``env``...) are copied."""
    epochs = epochs or [{"epoch": 1, "train_loss": None, "val_top1_err": top1_err}]
    record = {
        "format_version": METRICS_FORMAT,
        "run": run_block(rule_run_id(rule), [], {"rule": rule}),
        "variant": variant or rule,
        "dataset": dataset,
        "seed": int(seed),
        "hparams": {"epochs": len(epochs), "num_classes": int(num_classes), "train_size": int(train_size)},
        "final": {
            "top1_err": float(top1_err),
            "top5_err": None if top5_err is None else float(top5_err),
            "epochs": len(epochs),
        },
        "epochs": epochs,
        **extra,
    }
    return check_metrics(record, f"rule {rule!r}")


def read_rule_metrics(path: PathLike, rule: str, seed: int) -> dict:
    """Read and validate the ``metrics.json`` a user's rule wrote for ``seed``: the format (as
    :func:`read_metrics`), the run id ``rule:<rule>`` a table row selects and the seed of its path;
    :class:`ResultFileError` naming the file and the key otherwise."""
    m = read_metrics(path)
    found = (m.get("run") or {}).get("id")
    if found != rule_run_id(rule):
        raise ResultFileError(
            path,
            f"run.id is {found!r}; a file of rule {rule!r} must say "
            f"{rule_run_id(rule)!r} (gmsop.formats.rule_metrics builds one)",
        )
    if m["seed"] != int(seed):
        raise ResultFileError(path, f"seed is {m['seed']!r}, but the file is the one of seed {int(seed)}")
    return m


def rule_run_id(rule: str) -> str:
    """The run id a table row ``{rule: NAME}`` selects: ``rule:NAME``."""
    return f"rule:{rule}"


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gmsop.formats", description="Print the JSON Schema of a result file gmsop reads."
    )
    parser.add_argument("kind", choices=["metrics", "bench"], help="which file")
    args = parser.parse_args(argv)
    print(json.dumps(json_schema(args.kind), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
