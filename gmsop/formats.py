"""Every file the engine writes and aggregation reads, declared once, with its format version.

A workflow job writes a ``run`` block (:func:`run_block`) into its metrics.json or bench.json, so
tables select files by run id (``null``: trained by hand). Readers raise :class:`ResultFileError`
naming the file and the dotted key that is wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Versions of metrics.json and bench.json. 2: the ``run`` identity block and ``format_version`` itself.
METRICS_FORMAT = BENCH_FORMAT = 2
#: Version of the checkpoint ``last.pt``; a different value is refused on resume.
CHECKPOINT_FORMAT = 1

METRICS_NAME = "metrics.json"
BENCH_SUFFIX = ".json"
PROGRESS_NAME = "progress.jsonl"
CHECKPOINT_NAME = "last.pt"
PREVIOUS_CHECKPOINT_NAME = "previous.pt"
CONFIG_NAME = "config.json"

# Where the workflow keeps each result, as Snakemake patterns: the rules use them as they are,
# ``gmsop.experiments.Row`` fills them in.
RUN_METRICS_PATH = "results/runs/{run}/seed{seed}/" + METRICS_NAME
RULE_METRICS_PATH = "results/rules/{rulename}/seed{seed}/" + METRICS_NAME  # a user's rule writes it
CHECKED_METRICS_PATH = "results/checked/{rulename}/seed{seed}/" + METRICS_NAME  # its checked copy
CHECKPOINT_DIR = "results/checkpoints/{run}/seed{seed}"
BENCH_DIR = "results/bench/{experiment}"  # holds {bench}.json (BENCH_SUFFIX) per network shown
DATASET_INFO_PATH = "results/data/{dataset}.json"  # a prepared dataset's shape and classes
IDENTITIES_PATH = "results/plan/identities-{config}.json"  # every job's run block, per config hash

#: Keys every checkpoint holds besides ``format`` (gmsop.engine.checkpoint says what each is).
CHECKPOINT_KEYS = ("fingerprint", "epoch", "model", "optimizer", "rng", "records", "totals")

PathLike = str | os.PathLike


class ResultFileError(ValueError):
    """A result file is unreadable, of another format version, or lacks or mistypes a key."""

    def __init__(self, path: PathLike, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    # Counts written by a float-happy writer (10350000.0) are fine; 0.5 seeds are not.
    return _is_num(v) and (isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()))


def _list_of(check):
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


# kind -> (what a value must be, its check, its JSON Schema)
_KINDS = {
    "str": ("a string", lambda v: isinstance(v, str), {"type": "string"}),
    "int": ("an integer", _is_int, {"type": "integer"}),
    "num": ("a number", _is_num, {"type": "number"}),
    "dict": ("an object", lambda v: isinstance(v, dict), {"type": "object"}),
    "list": ("a list", lambda v: isinstance(v, list), {"type": "array"}),
    "int_list": ("a list of integers", _list_of(_is_int), {"type": "array", "items": {"type": "integer"}}),
    "num_list": ("a list of numbers", _list_of(_is_num), {"type": "array", "items": {"type": "number"}}),
}


def _keys(text: str) -> list[tuple[str, str, bool]]:
    """A block's declaration: ``"key:kind"`` per key, ``"key:kind?"`` when it may be null."""
    return [(key, kind.rstrip("?"), kind.endswith("?")) for key, kind in (w.split(":") for w in text.split())]


_RUN_REQUIRED = _keys("id:str planned_for:list settings:dict")
_PLANNED_REQUIRED = _keys("experiment:str row:str")
# What every producer writes: the gmsop trainer, or a user's own rule (README "Add a variant"),
# which may leave out the optional keys that have no meaning for its method.
_METRICS_REQUIRED = _keys(
    "format_version:int run:dict? variant:str dataset:str seed:int hparams:dict final:dict? epochs:list"
)
_METRICS_OPTIONAL = _keys(
    "backbone:str? protocol:str? params:int? rep_dim:int? flops_per_image:num? env:dict? tag:str?"
)
# num_classes decides whether a run learned (chance error); train_size and epochs say where a
# claim was tested (the scorecard).
_HPARAMS_REQUIRED = _keys("epochs:int num_classes:int train_size:int")
_HPARAMS_OPTIONAL = _keys("batch_size:int? schedule:list? width_mult:num? protocol_switches:dict?")
# val_routing: a gated mixture's last evaluation, images of class c that select component i
_FINAL_REQUIRED = _keys("top1_err:num top5_err:num? epochs:int")
_FINAL_OPTIONAL = _keys("train_time_s:num? train_img_s:num? val_routing:list? val_class_counts:int_list?")
# One epoch record, in the order metrics.json and progress.jsonl show it. distinct_topk_*,
# idle_components_*: per training batch of a gated mixture, mean and worst.
_EPOCH = _keys(
    "epoch:int lr:num? train_ce:num? train_balance:num? train_loss:num? train_top1_err:num? "
    "val_top1_err:num? val_top5_err:num? epoch_time_s:num? train_img_s:num? routing_counts:num_list? "
    "importance:num_list? gate_logit_spread:num? gate_noise_spread:num? distinct_topk_mean:num? "
    "distinct_topk_min:int? idle_components_mean:num? idle_components_max:int?"
)
EPOCH_KEYS = tuple(k for k, _, _ in _EPOCH)
_EPOCH_REQUIRED = [e for e in _EPOCH if e[0] in ("epoch", "train_loss", "val_top1_err")]
_EPOCH_OPTIONAL = [e for e in _EPOCH if e not in _EPOCH_REQUIRED]
_BENCH_REQUIRED = _keys(
    "format_version:int run:dict? variant:str backbone:str input_size:int_list batch_size:int device:str "
    "train_img_s:num params:int"
)
_BENCH_OPTIONAL = _keys(
    "num_classes:int? device_name:str? train_step_ms_median:num? train_step_ms_iqr:num? infer_img_s:num? "
    "peak_mem_mb:num? flops_per_image:num? achieved_tflops:num? env:dict? tag:str?"
)

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
        name, value, (what, check, _) = f"{prefix}{key}", obj.get(key), _KINDS[kind]
        if key not in obj and (key, kind, nullable) in required:
            raise ResultFileError(path, f"missing required key {name!r}")
        if value is None and key in obj and not nullable:
            raise ResultFileError(path, f"key {name!r} must be {what}, got null")
        if value is not None and not check(value):
            raise ResultFileError(
                path, f"key {name!r} must be {what}, got {value!r} ({type(value).__name__})"
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


def _check_record(path: PathLike, obj: Any, version: int, what: str, required, optional) -> None:
    """The checks metrics.json and bench.json share: an object, its version, its keys, its run block."""
    if not isinstance(obj, dict):
        raise ResultFileError(path, f"expected a JSON object at the top level, got {type(obj).__name__}")
    if "format_version" not in obj:
        raise ResultFileError(
            path,
            f"missing required key 'format_version': a {what} written before format "
            f"{version} (retrain it: snakemake --forcerun train bench)",
        )
    if (found := obj["format_version"]) != version:
        raise ResultFileError(
            path, f"key 'format_version' is {found!r}; this gmsop reads {what} format {version} only"
        )
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
        if not isinstance(ep, dict):
            raise ResultFileError(path, f"{where[:-1]} must be an object, got {type(ep).__name__}")
        _check(path, ep, where, _EPOCH_REQUIRED, _EPOCH_OPTIONAL)
        counts, imp = ep.get("routing_counts"), ep.get("importance")
        if counts is not None and imp is not None and len(counts) != len(imp):
            raise ResultFileError(
                path, f"{where}routing_counts has {len(counts)} entries but {where}importance has {len(imp)}"
            )
        if counts is not None and n_components not in (None, len(counts)):
            raise ResultFileError(
                path,
                f"{where}routing_counts has {len(counts)} components, earlier epochs have {n_components}",
            )
        n_components = n_components if counts is None else len(counts)
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
    """bench.json files: each path a file, or a folder searched with its subfolders, in name order."""
    files: list[Path] = []
    for p in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        files += sorted(p.rglob(f"*{BENCH_SUFFIX}")) if p.is_dir() else [p]
    return files


# The same declarations as JSON Schema (workflow/schemas/*.schema.json are generated from this,
# a test keeps them equal), for producers outside Python: a user's own rule.


def _object(required, optional=(), nested: dict | None = None) -> dict:
    props = {}
    for key, kind, nullable in list(required) + list(optional):
        t = dict((nested or {}).get(key, _KINDS[kind][2]))
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
    """Read and validate the ``metrics.json`` a user's rule wrote for ``seed``: format, id, seed."""
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m gmsop.formats", description="Print the JSON Schema of a result file gmsop reads."
    )
    parser.add_argument("kind", choices=["metrics", "bench"], help="which file")
    print(json.dumps(json_schema(parser.parse_args().kind), indent=2))
