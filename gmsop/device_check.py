"""``gmsop check-device``: what CPU-only CI cannot settle, checked in one command on a GPU.

The parts (:data:`PARTS`, ``--parts`` picks some) print PASSED / FAILED / SKIPPED as each ends;
``DIR/device_check.json`` is rewritten after every part (the rest ``pending``) and
``DIR/device_check.md`` written at the end. Full sizes follow the paper (width 1, 64x64, batch
256); ``--tiny`` sizes prove the code paths on a CPU (``--device cpu --tiny``), not the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gmsop.atomic import atomic_write, atomic_write_json
from gmsop.compile_report import compile_graph_count
from gmsop.data import SubsetWarning
from gmsop.engine.config import TrainConfig, default_schedule
from gmsop.engine.env import env_info, synchronize
from gmsop.engine.loop import Runtime
from gmsop.engine.throughput import BenchConfig, measure_throughput
from gmsop.engine.trainer import train
from gmsop.gpu_slots import visible_gpus
from gmsop.registry import build_model

FORMAT = "gmsop-device-check/1"
JSON_NAME, MD_NAME = "device_check.json", "device_check.md"
#: The variants of config.yaml's ``table2`` experiment (a test checks it).
TABLE2 = tuple(
    "ResNet-18, ResNet-18-512d, Ave-GAP-16, GM-GAP-16-8, ResNet-18-8256d, SR-SOP, Ave-SOP-16, "
    "Parametric SR-SOP, GM-SOP-16-8".split(", ")
)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Set for the cuda-tests subprocess, so a check-device a test starts does not recurse.
NESTED_ENV = "GMSOP_DEVICE_CHECK_NESTED"


@dataclass(frozen=True)
class Sizes:
    """Every size a part uses; the defaults are FULL (the paper's setting, for CUDA)."""

    width_mult: float = 1.0  # network width
    image_size: int = 64  # train-smoke and throughput input, pixels a side
    batch_size: int = 256  # train-smoke and throughput batch
    train_images: int = 2560  # train-smoke: images per epoch
    num_classes: int = 10  # train-smoke classes (few: a signal learnt in few steps)
    lr_scale: float = 1.0  # x the released first learning rate
    mixture_batch: int = 32
    mixture_image: int = 64
    bench_classes: int = 1000  # mixture-paths, compile-graphs and throughput classes
    bench_warmup: int = 10
    bench_steps: int = 40
    matmul_n: int = 8192  # square matmul timed for the device's peak rate


FULL = Sizes()
TINY = Sizes(0.25, 16, 32, 320, 10, 0.5, 6, 32, 10, 1, 3, 1024)  # ``--tiny``: any CPU, in field order


class Skipped(Exception):
    """A part cannot run here (no CUDA, no snakemake, ...); the message says why."""


@dataclass
class Context:
    device: torch.device
    sizes: Sizes
    out_dir: Path  # the report folder: subprocess logs go here
    work_dir: Path  # scratch (generated data, caches, the Snakemake project)


def _overrides(s: Sizes) -> dict[str, Any]:
    return {"width_mult": s.width_mult} if s.width_mult != 1.0 else {}


def _model(variant: str, ctx: Context):
    torch.manual_seed(0)
    model = build_model(variant, num_classes=ctx.sizes.bench_classes, **_overrides(ctx.sizes))
    return model.to(ctx.device).train()


def _input(ctx: Context, **kwargs):
    s = ctx.sizes
    return torch.randn(s.mixture_batch, 3, s.mixture_image, s.mixture_image, **kwargs)


def _env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (a subprocess elsewhere loses ``.``)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *paths]), **extra}


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# The parts: each is fn(ctx, figures, fail) -> summary; fail(reason) records a problem and the part
# goes on (it is reported failed); Skipped means it could not run here.


def cuda_tests(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    if os.environ.get(NESTED_ENV):
        raise Skipped(f"running inside the cuda-tests part of another check-device ({NESTED_ENV} is set)")
    if not (REPO_ROOT / "tests").is_dir() or importlib.util.find_spec("pytest") is None:
        raise Skipped(f"needs pytest and tests/ beside the package ({REPO_ROOT}): run from a checkout")
    # only the files that use the marker (importing every test module takes minutes on a small CPU);
    # -o addopts= drops pyproject's options (a bare GPU machine may lack pytest-benchmark)
    files = sorted(
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "tests").glob("test_*.py")
        if re.search(r"mark\.cuda\b", p.read_text(encoding="utf-8"))
    )
    cmd = [sys.executable, *"-m pytest -m cuda -q -rs -p no:cacheprovider -o addopts=".split(), *files]
    figures["command"] = shlex.join(cmd)
    res = subprocess.run(
        cmd, cwd=REPO_ROOT, env=_env(**{NESTED_ENV: "1"}), capture_output=True, text=True, timeout=600
    )
    log = ctx.out_dir / "cuda_tests.log"
    log.write_text(res.stdout + res.stderr)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""  # "3 passed, 2 skipped"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary)}
    figures.update(returncode=res.returncode, log=str(log), summary=summary, **counts)
    if res.returncode != 0:
        fail(f"pytest -m cuda exited {res.returncode}: {_tail(res.stdout + res.stderr, 3)}")
    elif not counts.get("passed") and ctx.device.type == "cuda":
        fail(f"CUDA is here, yet no CUDA test passed: {summary}")
    elif not counts.get("passed"):
        raise Skipped(f"no CUDA here, so the CUDA tests skip: {summary}")
    return summary


#: ||grouped - generic|| / ||generic|| allowed for logits and gradients (input; all parameters as
#: one vector). float32 differs by summation order only; bf16 rounds every matmul input to 8 bits
#: in GEMMs of different shapes (measured on a CPU at tiny size: logits 0.7%, gradients 1-3%).
TOLERANCES = {"float32": {"output": 1e-4, "grad": 1e-3}, "bfloat16": {"output": 3e-2, "grad": 5e-2}}


def _rel(a, b) -> float:
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    den, num = float(b.norm()), float((a - b).norm())
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def compare_paths(variant: str, ctx: Context, dtype: str) -> dict[str, Any]:
    """Logits, gradients and routing of the grouped and generic paths of one model in one dtype."""
    model = _model(variant, ctx)
    rt = Runtime.for_device(ctx.device, amp=dtype == "bfloat16")
    model.to(memory_format=torch.channels_last if rt.channels_last else torch.contiguous_format)
    with torch.no_grad():  # distinct gate logits: routing follows the features, not tie-breaks
        model.head.gate.w_gate.normal_(0.0, 1.0)
    g = torch.Generator().manual_seed(2)
    x = _input(ctx, generator=g).to(ctx.device)
    y = torch.randint(0, ctx.sizes.bench_classes, (ctx.sizes.mixture_batch,), generator=g).to(ctx.device)
    res = {}
    for path in ("grouped", "generic"):
        model.zero_grad(set_to_none=True)
        model.head.execution = path
        torch.manual_seed(1)  # the same gate noise and dropout on both paths
        xi = x.clone().requires_grad_()
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            out = model(rt.place(xi))
        (F.cross_entropy(out.logits.float(), y) + out.balance_loss.float()).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        grads = torch.cat([t.flatten() for t in grads])
        res[path] = {"output": out.logits.detach().float(), "input_grad": xi.grad, "param_grad": grads}
        res[path]["counts"] = out.gate.counts.detach()
    tol, problems = TOLERANCES[dtype], []
    fig = {"variant": variant, "dtype": dtype, "default_path": model.head.execution_path(ctx.device)}
    for name, t in (("output", "output"), ("input_grad", "grad"), ("param_grad", "grad")):
        fig[f"{name}_rel"] = rel = _rel(res["grouped"][name], res["generic"][name])
        if not rel <= tol[t]:
            problems.append(f"{name}_rel {rel:.2e} > {tol[t]:g}")
    equal = bool(torch.equal(res["grouped"]["counts"], res["generic"]["counts"]))
    fig.update(routing_counts_equal=equal, tol_output=tol["output"], tol_grad=tol["grad"])
    fig["problems"] = problems + ([] if equal else ["routing differs"])
    return fig


def forward_sync(variant: str, ctx: Context) -> str | None:
    """None when a training-mode forward (float32, then bf16) runs under set_sync_debug_mode("error")
    after one warm-up of each (lazy indices and cuDNN plans are one-time costs); else the error."""
    model = _model(variant, ctx).to(memory_format=torch.channels_last)
    x = _input(ctx, device=ctx.device).contiguous(memory_format=torch.channels_last)
    for debug in (0, "error"):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(debug)
        try:
            for amp in (False, True):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    model(x)
        except RuntimeError as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "gmsop" in f.filename][-2:]
            return f"{exc} at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return None


def mixture_paths(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    rows, cuda = figures.setdefault("comparisons", []), ctx.device.type == "cuda"
    for variant in ("GM-SOP-16-8", "GM-GAP-16-8"):
        for dtype in ("bfloat16", "float32"):
            rows.append(compare_paths(variant, ctx, dtype))
            for problem in rows[-1]["problems"]:
                fail(f"{variant} {dtype}: {problem}")
        if cuda:
            sync = figures.setdefault("forward_sync", {})[variant] = forward_sync(variant, ctx)
            if sync:
                fail(f"{variant}: the forward synchronised host and device: {sync}")
    agree = sum(not r["problems"] for r in rows)
    sync = "no host sync in the forward" if cuda else "sync check skipped (no CUDA)"
    return f"{agree}/{len(rows)} grouped-vs-generic comparisons (bf16, fp32) agree; {sync}"


def compile_graphs(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    """SR-SOP and the grouped mixture path should trace as one graph; the generic path breaks
    where it reads routed batch sizes back to the host (reported, not judged)."""
    rows = figures.setdefault("models", [])
    for variant, path in (("SR-SOP", None), ("GM-SOP-16-8", "grouped"), ("GM-SOP-16-8", "generic")):
        model = _model(variant, ctx)
        if path:
            model.head.execution = path
        r = compile_graph_count(model, _input(ctx, device=ctx.device), max_reasons=5)
        rows.append({"variant": variant, "path": path, **r})
        if path != "generic" and r["graph_break_count"]:
            fail(f"{variant} {path or ''}: {r['graph_break_count']} graph break(s): {r['break_reasons'][:1]}")
    return "; ".join(
        f"{r['variant']}{' ' + r['path'] if r['path'] else ''} {r['graph_count']} graph(s) / "
        f"{r['graph_break_count']} break(s)"
        for r in rows
    )


def write_imagenet_release(root: Path, size: int, n_train: int, n_val: int, num_classes: int) -> dict:
    """Generated images in the downsampled-ImageNet release layout that ``imagenet64`` reads. A
    class is a random 4x4 colour pattern blown up to the image size under noise (sd 40 of 255):
    learnable in a few dozen steps, while no single pixel gives it away."""
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, (num_classes, 3, 4, 4)).astype(np.float32)
    idx = (np.arange(size) * 4) // size  # pixel -> pattern cell
    for folder, name, n in (
        (f"Imagenet{size}_train_part1_npz", "train_data_batch_1.npz", n_train),
        (f"Imagenet{size}_val_npz", "val_data.npz", n_val),
    ):
        labels = rng.integers(0, num_classes, n)
        x = protos[labels][:, :, idx][:, :, :, idx] + rng.normal(0.0, 40.0, (n, 3, size, size))
        data = np.clip(x, 0, 255).astype(np.uint8).reshape(n, -1)
        (root / folder).mkdir(parents=True, exist_ok=True)
        extra = {"mean": data.mean(axis=0)} if name.startswith("train") else {}
        np.savez(root / folder / name, data=data, labels=labels + 1, **extra)
    keys = ("root", "size", "train_images", "val_images", "num_classes")
    return dict(zip(keys, (str(root), size, n_train, n_val, num_classes)))


def train_smoke(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    s, root, n = ctx.sizes, ctx.work_dir / "imagenet", ctx.sizes.train_images
    figures["data"] = write_imagenet_release(root, s.image_size, n, n // 8, s.num_classes)
    options = {"size": s.image_size, "num_classes": s.num_classes, "cache_dir": str(ctx.work_dir / "cache")}

    def one(variant: str) -> dict[str, Any]:
        lr = default_schedule(variant)[0][0] * s.lr_scale
        cfg = TrainConfig(
            variant=variant,
            dataset="imagenet64",
            data_root=str(root),
            batch_size=s.batch_size,
            dataset_options=options,
            schedule=[(lr, 2)],
            device=str(ctx.device),
            overrides=_overrides(s),
            progress="none",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubsetWarning)  # a few thousand images: a "subset", on purpose
            epochs = train(cfg)["epochs"]
        losses = [e["train_loss"] for e in epochs]
        print(f"  ... train-smoke: {variant:<18} loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
        if not all(math.isfinite(v) for v in losses) or not losses[-1] < losses[0]:
            fail(f"{variant}: loss did not fall and stay finite ({losses[0]:.3f} -> {losses[-1]:.3f})")
        last = {"val_top1_err": epochs[-1]["val_top1_err"], "img_s": epochs[-1]["train_img_s"]}
        return {"variant": variant, "lr": lr, "losses": losses, **last}

    rows = _each_variant(one, figures, fail)
    fell = sum(r["losses"][-1] < r["losses"][0] for r in rows if "losses" in r)
    return (
        f"{fell}/{len(TABLE2)} variants: loss fell ({s.image_size}px, batch {s.batch_size}, "
        f"width {s.width_mult:g})"
    )


def _each_variant(fn: Callable[[str], dict], figures: dict, fail: Callable[[str], None]) -> list[dict]:
    """``fn(variant)`` of every Table-2 variant into ``figures["variants"]``; one that raises (out of
    memory, a NaN loss) is recorded with its error and does not hide the others."""
    rows = figures.setdefault("variants", [])
    for variant in TABLE2:
        try:
            rows.append(fn(variant))
        except Exception as exc:  # noqa: BLE001
            rows.append({"variant": variant, "error": _tail(traceback.format_exc(), 3)})
            fail(f"{variant}: {type(exc).__name__}: {exc}")
        finally:  # free this variant's model and optimizer before the next one's
            gc.collect()
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
    return rows


def matmul_tflops(device, dtype, n: int) -> float:
    """TFLOP/s of an (n x n) @ (n x n) matmul in ``dtype`` (2 n^3 FLOPs), timed for >= 1 s."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    synchronize(device)
    reps, t0 = 0, time.perf_counter()
    while reps < 4 or time.perf_counter() - t0 < 1.0:
        a @ b
        reps += 1
        synchronize(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def throughput(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    s = ctx.sizes
    peaks = figures["matmul_tflops"] = {
        str(d).replace("torch.", ""): matmul_tflops(ctx.device, d, s.matmul_n)
        for d in (torch.bfloat16, torch.float32)
    }
    # amp=True measures as training runs; MFU is against the autocast dtype's matmul rate (the
    # second-order layers stay float32: MFU understates them)
    peak = "bfloat16" if Runtime.for_device(ctx.device, amp=True).amp_dtype is not None else "float32"
    figures["convention"] = (
        f"achieved FLOP/s = 3 x forward FLOPs x training img/s; MFU = achieved / this "
        f"run's {peak} matmul rate"
    )
    keys = "variant train_img_s infer_img_s peak_mem_mb flops_per_image achieved_tflops params".split()

    def one(variant: str) -> dict[str, Any]:
        b = measure_throughput(
            BenchConfig(
                variant=variant,
                input_size=(3, s.image_size, s.image_size),
                num_classes=s.bench_classes,
                batch_size=s.batch_size,
                warmup=s.bench_warmup,
                steps=s.bench_steps,
                device=str(ctx.device),
                overrides=_overrides(s),
                amp=True,
            )
        )
        row = {**{k: b[k] for k in keys}, "mfu": b["achieved_tflops"] / peaks[peak]}
        img_s, mfu = b["train_img_s"], 100 * row["mfu"]
        print(f"  ... throughput: {variant:<18} train {img_s:.0f} img/s, MFU {mfu:.1f}%", flush=True)
        return row

    rows = _each_variant(one, figures, fail)
    done = [r for r in rows if "mfu" in r]
    return f"{len(done)}/{len(TABLE2)} variants measured; {peak} matmul {peaks[peak]:.2f} TFLOP/s"


_PROBE = """import json, os, sys, time  # a gpu=1 job: which GPU the slot allocator gave it, and when
start = time.time()
time.sleep(1.0)  # long enough that two jobs running at once would overlap visibly
json.dump({"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()},
          open(sys.argv[1], "w"))
"""


def snakemake_slots(ctx: Context, figures: dict, fail: Callable[[str], None]) -> str:
    if importlib.util.find_spec("snakemake") is None:
        raise Skipped("snakemake is not installed in this Python (pip install -e '.[workflow]')")
    project = ctx.work_dir / "snakemake"
    project.mkdir(parents=True, exist_ok=True)
    py = shlex.quote(sys.executable)
    rules = "".join(
        f'rule {j}:\n    output: "{j}.json"\n    resources: gpu=1\n'
        f'    shell: "{py} -m gmsop.gpu_slots -n 1 -- {py} probe.py {{output}}"\n'
        for j in ("a", "b")
    )
    (project / "Snakefile").write_text(f'rule all:\n    input: "a.json", "b.json"\n{rules}')
    (project / "probe.py").write_text(_PROBE)
    env = _env(GMSOP_GPU_LOCK_DIR=str(project / "locks"))  # private locks: other jobs' GPUs are not touched
    for var in ("SNAKEMAKE_PROFILE", "GMSOP_GPU_SLOTS", "GMSOP_NUM_GPUS"):
        env.pop(var, None)
    pool = visible_gpus()
    if not pool:  # no GPU here: one pretend slot, so the locking still runs
        env["GMSOP_NUM_GPUS"] = "1"
        env.pop("CUDA_VISIBLE_DEVICES", None)
    figures["gpus_visible"] = pool
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1"]
    res = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    (ctx.out_dir / "snakemake_slots.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        fail(f"snakemake exited {res.returncode}: {_tail(res.stdout + res.stderr)}")
        return ""
    a, b = (json.loads((project / f"{j}.json").read_text()) for j in ("a", "b"))
    figures["jobs"] = {"a": a, "b": b}
    serial = a["end"] <= b["start"] or b["end"] <= a["start"]
    if not serial:
        fail("the two gpu=1 jobs ran at the same time")
    for job in (a, b):
        if job["cvd"] not in (pool or ["0"]):
            fail(f"a job saw CUDA_VISIBLE_DEVICES={job['cvd']!r}, expected one of {pool or ['0']}")
    return (
        f"2 jobs ran {'one after the other' if serial else 'AT ONCE'} on GPU {a['cvd']!r} and "
        f"{b['cvd']!r}" + ("" if pool else " (a pretend slot: no GPU here)")
    )


#: name -> (part, help), in the order they run
PARTS: dict[str, tuple[Callable, str]] = {
    "cuda-tests": (cuda_tests, "pytest -m cuda in a subprocess: the tests that skip without CUDA"),
    "mixture-paths": (mixture_paths, "grouped and generic mixture paths agree (bf16, fp32); no host sync"),
    "compile-graphs": (compile_graphs, "torch.compile graphs and breaks of SR-SOP and GM-SOP-16-8"),
    "train-smoke": (train_smoke, "two epochs of every Table-2 variant via the imagenet64 reader and trainer"),
    "throughput": (throughput, "gmsop bench of every Table-2 variant, matmul peak and MFU"),
    "snakemake-slots": (snakemake_slots, "two gpu=1 Snakemake jobs through gmsop.gpu_slots"),
}


def _record(*values) -> dict[str, Any]:
    return dict(zip(("name", "status", "summary", "reason", "duration_s", "figures"), values))


def run_part(name: str, fn: Callable, ctx: Context) -> dict[str, Any]:
    """One part's record: passed, failed (its problems, or the end of the traceback) or skipped."""
    figures, problems, t0 = {}, [], time.monotonic()
    status, summary, reason = "passed", "", ""
    try:
        summary = fn(ctx, figures, problems.append)
    except Skipped as exc:
        status, reason = "skipped", str(exc)
    except Exception:  # noqa: BLE001 - a broken part must not stop the others
        problems.append(_tail(traceback.format_exc(), 6))
    if problems:
        status, reason = "failed", "; ".join(problems)
    return _record(name, status, summary or "", reason, round(time.monotonic() - t0, 3), figures)


def _finite(obj: Any) -> Any:
    """A NaN loss is a finding here: written as the string "nan"/"inf" (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    return [_finite(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


def document(header: dict[str, Any], records: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    statuses = [r["status"] for r in records]
    verdict = "failed" if "failed" in statuses else "incomplete" if "pending" in statuses else "passed"
    counts = {s: statuses.count(s) for s in ("passed", "failed", "skipped", "pending")}
    doc = {"format": FORMAT, **header, "complete": complete, "verdict": verdict, "counts": counts}
    return _finite({**doc, "parts": records})


def _line(r: dict[str, Any]) -> str:
    detail = (r["summary"] if r["status"] == "passed" else r["reason"]).strip().splitlines() or [""]
    return f"{r['status'].upper():<8} {r['name']:<16} {detail[-1]} ({r['duration_s']:.1f} s)"


def write_markdown(path: Path, doc: dict[str, Any]) -> None:
    env = doc["env"]
    head = (
        f"# gmsop check-device: {doc['verdict'].upper()}\n\n{env.get('device_name')} ({env.get('device')}), "
        f"torch {env.get('torch_build')}, started {doc['started']}, "
        f"options {json.dumps(doc['options'])}\n\n```"
    )
    lines = [head, *map(_line, doc["parts"]), "```"]
    for r in doc["parts"]:
        body, figures = r["reason"] or r["summary"], json.dumps(r["figures"], indent=1)
        lines.append(f"\n## {r['name']}: {r['status']}\n\n{body}\n\n```json\n{figures}\n```")
    atomic_write(path, "\n".join(lines) + "\n")


def run_parts(parts: dict[str, Callable], ctx: Context, header: dict[str, Any]) -> dict[str, Any]:
    """Run ``parts`` in order, rewriting ``device_check.json`` in ``ctx.out_dir`` before each and at
    the end, with ``device_check.md``; returns the document."""
    records = [_record(n, "pending", "", "", 0.0, {}) for n in parts]
    for i, (name, fn) in enumerate(parts.items()):
        atomic_write_json(ctx.out_dir / JSON_NAME, document(header, records, complete=False))
        records[i] = run_part(name, fn, ctx)
        print(_line(records[i]), flush=True)
        if torch.cuda.is_initialized():  # what a part left cached would count against the next one's memory
            torch.cuda.empty_cache()
    doc = document(header, records, complete=True)
    atomic_write_json(ctx.out_dir / JSON_NAME, doc)
    write_markdown(ctx.out_dir / MD_NAME, doc)
    return doc


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gmsop check-device",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the checks CPU-only CI cannot on this device; print PASSED / FAILED / SKIPPED per\n"
        "part, write DIR/device_check.json (after every part) and DIR/device_check.md. No time limit\n"
        "of its own: run it under timeout. Exit status 0 when no part failed, 1 when one did, 2 for a\n"
        "bad option.",
        epilog="parts, in the order they run:\n" + "\n".join(f"  {n:<16} {h}" for n, (_, h) in PARTS.items()),
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for device_check.json/.md and logs (created)"
    )
    devices = ("auto", "cuda", "cpu")
    p.add_argument(
        "--device", choices=devices, default="auto", help="auto (default): CUDA if available, else CPU"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="small sizes (width 0.25, 16x16 images, batch 32; 1024^2 matmul): every part on a "
        "CPU within a minute. Without it: width 1, 64x64, batch 256, 8192^2 matmul (for CUDA)",
    )
    p.add_argument("--parts", default="all", metavar="NAME[,NAME...]", help="only these parts (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = get_args_parser()
    args = p.parse_args(argv)
    names = list(PARTS) if args.parts == "all" else [n.strip() for n in args.parts.split(",") if n.strip()]
    bad = [n for n in names if n not in PARTS] or ([] if names else [args.parts])
    if bad:
        p.error(f"--parts: unknown part(s) {', '.join(map(repr, bad))}; choose from: all, {', '.join(PARTS)}")
    error = "gmsop check-device: error:"
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"{error} --device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"{error} --out {out} is a file; give a folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    sizes = TINY if args.tiny else FULL
    header = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": {"device": args.device, "tiny": args.tiny, "parts": names},
        "sizes": asdict(sizes),
        "env": env_info(device, deterministic=False),
    }
    what = f"{'tiny' if args.tiny else 'full'} sizes, {len(names)} part(s)"
    print(f"gmsop check-device: {header['env']['device_name']} ({device}), {what}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gmsop-device-check-") as work:
        ctx = Context(device=device, sizes=sizes, out_dir=out.resolve(), work_dir=Path(work))
        doc = run_parts({n: PARTS[n][0] for n in names}, ctx, header)
    c = doc["counts"]
    counts = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
    print(f"{doc['verdict'].upper()}: {counts}; wrote {out / JSON_NAME} and {out / MD_NAME}", flush=True)
    return 1 if c["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
