"""The five parts of ``gmsop check-device`` and the sizes they run at.

Each part is ``fn(ctx, run)``: it records figures into ``run.figures`` as it goes (so a part
cut short by its time budget still reports what it managed), calls ``run.fail(reason)`` for
every problem it finds without stopping, checks ``run.budget`` between steps, sets
``run.summary`` (the one-line verdict's detail) and raises ``PartSkipped`` via ``run.skip``
when something it needs is missing. What each part settles, and why:

* ``cuda-tests``: the tests that skip without CUDA (``@pytest.mark.cuda``) never ran in CI;
  run them in a pytest subprocess.
* ``mixture-paths``: the gated mixture's grouped path (the CUDA default) and generic path
  must agree under bf16 autocast on the device, and the forward of a training step must not
  synchronise host and device (the grouped path exists for that).
* ``train-smoke``: every Table-2 variant trains through the real downsampled-ImageNet reader,
  cache, loader and training loop on the device, with a falling, finite loss.
* ``throughput``: ``gmsop bench``'s measurement of every Table-2 variant, with the FLOP rate
  set against the matmul rate measured in this same run (MFU).
* ``snakemake-slots``: two ``gpu=1`` jobs under Snakemake each take a GPU slot from
  ``gmsop.gpu_slots`` and run one after the other.

Full sizes (CUDA) follow the paper's setting: full width, 64x64, batch 256. ``--tiny`` sizes
run every part on a CPU within a minute; they prove the code paths, not the numbers.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gmsop.device_check.runner import Part, PartRun, PartTimedOut, traceback_tail

__all__ = ["Sizes", "FULL", "TINY", "Context", "PARTS", "TABLE2", "write_imagenet_release", "matmul_tflops",
           "REPO_ROOT", "NESTED_ENV"]

#: The rows of config.yaml's ``table2`` experiment: (variant, schedule family or None for the
#: variant's own). tests/test_device_check.py checks that the two agree.
TABLE2: tuple[tuple[str, str | None], ...] = (
    ("ResNet-18", None),
    ("ResNet-18-512d", None),
    ("Ave-GAP-16", None),
    ("GM-GAP-16-8", None),
    ("ResNet-18-8256d", None),
    ("SR-SOP", "srsop"),
    ("Ave-SOP-16", "gm_sop"),
    ("Parametric SR-SOP", "srsop"),
    ("GM-SOP-16-8", "gm_sop"),
)

#: The checkout holding the package (tests/ and the working tree the GPU machine runs from).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Set in the environment of the cuda-tests subprocess, so a check-device started inside it
#: (by a test) does not start the cuda tests again.
NESTED_ENV = "GMSOP_DEVICE_CHECK_NESTED"


@dataclass(frozen=True)
class Sizes:
    """Every size a part uses; FULL on CUDA, TINY (``--tiny``) on anything."""

    width_mult: float  # network width (1.0 = the paper's)
    image_size: int  # train-smoke and throughput input, pixels a side
    batch_size: int  # train-smoke and throughput batch
    train_images: int  # train-smoke training set (one epoch of it is trained)
    val_images: int
    num_classes: int  # train-smoke classes (few: a learnable signal in few steps)
    lr_scale: float  # x the released first learning rate (which is for batch 256)
    smoke_chunks: int  # the epoch is trained in this many chunks; loss of the first vs the last
    mixture_batch: int
    mixture_image: int
    mixture_classes: int
    bench_classes: int
    bench_warmup: int  # timm: >= 10
    bench_steps: int  # timm: >= 40
    matmul_n: int  # square matmul timed for the device's peak rate
    matmul_min_s: float  # time each matmul dtype for at least this long


FULL = Sizes(width_mult=1.0, image_size=64, batch_size=256, train_images=5120, val_images=512, num_classes=10,
             lr_scale=1.0, smoke_chunks=4, mixture_batch=32, mixture_image=64, mixture_classes=1000, bench_classes=1000,
             bench_warmup=10, bench_steps=40, matmul_n=8192, matmul_min_s=1.0)
TINY = Sizes(width_mult=0.25, image_size=16, batch_size=32, train_images=640, val_images=64, num_classes=10,
             lr_scale=0.5, smoke_chunks=4, mixture_batch=6, mixture_image=32, mixture_classes=10, bench_classes=10,
             bench_warmup=1, bench_steps=3, matmul_n=1024, matmul_min_s=0.2)


@dataclass
class Context:
    """What every part gets: the device, the sizes, where to write logs and scratch data."""

    device: Any  # torch.device
    sizes: Sizes
    tiny: bool
    out_dir: Path  # the report folder: logs of subprocesses go here
    work_dir: Path  # scratch (generated data, caches, the Snakemake project); removed afterwards

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# ---------------------------------------------------------------------------------------------
# helpers


def _subprocess_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the GPU machine runs the package
    from the working tree with ``PYTHONPATH=.``, which a subprocess in another folder loses)."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def _timeout(run: PartRun, what: str, exc: subprocess.TimeoutExpired) -> PartTimedOut:
    return PartTimedOut(f"timed out: {what} did not finish within its {exc.timeout:.0f} s "
                        f"(part budget {run.budget.seconds:.1f} s)")


def _rel(a, b) -> float:
    """Norm-wise relative difference ||a - b|| / ||b|| (0 when both are zero)."""
    a, b = a.detach().double(), b.detach().double()
    den = float(b.norm())
    num = float((a - b).norm())
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def _variant_overrides(sizes: Sizes) -> dict[str, Any]:
    return {"width_mult": sizes.width_mult} if sizes.width_mult != 1.0 else {}


def _free(ctx: Context) -> None:
    import gc

    import torch

    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# 1. cuda-tests


def _cuda_test_files() -> list[Path]:
    """Test files that carry the ``cuda`` marker (only these are collected: importing every test
    module would cost the part most of its time on a small CPU)."""
    tests = REPO_ROOT / "tests"
    return sorted(p for p in tests.glob("test_*.py") if re.search(r"mark\.cuda\b", p.read_text(encoding="utf-8")))


def _junit_counts(path: Path) -> dict[str, Any]:
    """passed / failed / skipped counts and the failing tests and skip reasons of a JUnit file."""
    root = ET.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed, skip_reasons = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            counts["failed"] += 1
            failed.append(f"{name}: {(bad.get('message') or '').strip()[:300]}")
        elif skipped is not None:
            counts["skipped"] += 1
            reason = (skipped.get("message") or "").strip()
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        else:
            counts["passed"] += 1
    return {**counts, "failed_tests": failed, "skip_reasons": skip_reasons}


def cuda_tests(ctx: Context, run: PartRun) -> None:
    if os.environ.get(NESTED_ENV):
        run.skip(f"running inside the cuda-tests part of another check-device ({NESTED_ENV} is set)")
    if not (REPO_ROOT / "tests").is_dir():
        run.skip(f"no tests/ folder beside the package ({REPO_ROOT}): run from a checkout")
    if importlib.util.find_spec("pytest") is None:
        run.skip("pytest is not installed in this Python (pip install -e '.[test]')")
    files = _cuda_test_files()
    if not files:
        run.fail("no test file in tests/ carries @pytest.mark.cuda")
        return
    xml = ctx.out_dir / "cuda_tests.xml"
    log = ctx.out_dir / "cuda_tests.log"
    xml.unlink(missing_ok=True)  # a previous run's file must not be read as this one's
    # -o addopts= drops pyproject's options (--benchmark-skip needs pytest-benchmark, which a
    # bare GPU machine may lack); the cuda marker selects, the JUnit file counts.
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--junitxml={xml}", *[str(f.relative_to(REPO_ROOT)) for f in files]]
    run.figures["command"] = shlex.join(cmd)
    run.figures["files"] = [f.name for f in files]
    run.note(f"pytest -m cuda on {len(files)} file(s), timeout {run.budget.remaining():.0f} s")
    try:
        res = subprocess.run(cmd, cwd=REPO_ROOT, env=_subprocess_env(**{NESTED_ENV: "1"}), capture_output=True,
                             text=True, timeout=max(1.0, run.budget.remaining()))
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode() if isinstance(exc.output, bytes) else (exc.output or "")
        log.write_text(out)
        raise _timeout(run, "pytest -m cuda", exc) from None
    log.write_text(res.stdout + res.stderr)
    run.figures["returncode"] = res.returncode
    run.figures["log"] = str(log)
    if res.returncode == 5:
        run.fail("pytest collected no test marked cuda (exit 5)")
        return
    if not xml.exists():
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-5:])
        run.fail(f"pytest wrote no JUnit file (exit {res.returncode}): {tail}")
        return
    counts = _junit_counts(xml)
    run.figures.update(counts)
    reasons = "; ".join(f"{n} x {r!r}" for r, n in counts["skip_reasons"].items())
    run.summary = f"{counts['passed']} passed, {counts['skipped']} skipped, {counts['failed']} failed"
    if counts["failed"] or res.returncode != 0:
        run.fail(f"{run.summary} (pytest exit {res.returncode}): " + "; ".join(counts["failed_tests"][:5]))
    elif counts["passed"] == 0 and ctx.cuda:
        run.fail(f"CUDA is here, yet all {counts['skipped']} CUDA test(s) skipped: {reasons}")
    elif counts["passed"] == 0:
        run.skip(f"all {counts['skipped']} CUDA test(s) skipped (no CUDA device here): {reasons}")
    elif counts["skipped"]:
        run.summary += f" ({reasons})"


# ---------------------------------------------------------------------------------------------
# 2. mixture-paths

#: ||grouped - generic|| / ||generic|| allowed for the logits and for the gradients (of the
#: input, and of all parameters as one vector). In float32 the two paths differ only by
#: summation order; under bf16 autocast every matmul input is rounded to 8 significant bits
#: (up to 0.4%) in GEMMs of different shapes on the two paths, and the gradients then pass back
#: through the whole backbone: a few percent is the agreement to expect (measured on a CPU with
#: bf16 at tiny size: logits 0.7%, gradients 1-3%). A single parameter's gradient is reported
#: but not judged: a BatchNorm bias's gradient is a sum with cancellation and can differ by
#: more than the whole does.
TOLERANCES = {"float32": {"output": 1e-4, "grad": 1e-3}, "bfloat16": {"output": 3e-2, "grad": 5e-2}}


def _path_result(model, x, y, path: str, amp_dtype, rt) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    model.head.execution = path
    torch.manual_seed(1)  # the same gate noise, tie-breaks and dropout on both paths
    xi = x.clone().requires_grad_()
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        out = model(rt.place(xi))
    loss = F.cross_entropy(out.logits.float(), y) + out.balance_loss.float()
    loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone() for n, p in model.named_parameters()}
    return {"logits": out.logits.detach().float(), "input_grad": xi.grad.detach(), "grads": grads,
            "counts": out.gate.counts.detach(), "importance": out.gate.importance.detach(),
            "balance": out.balance_loss.detach().float()}


def compare_paths(variant: str, ctx: Context, amp: str) -> dict[str, Any]:
    """Outputs, gradients and routing of the grouped and generic paths of one model, one dtype."""
    import torch

    from gmsop import build_model
    from gmsop.engine.loop import Runtime

    s = ctx.sizes
    torch.manual_seed(0)
    model = build_model(variant, num_classes=s.mixture_classes, **_variant_overrides(s)).to(ctx.device).train()
    rt = Runtime.for_device(ctx.device, amp=amp == "bfloat16")
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    with torch.no_grad():  # distinct gate logits: routing follows the features, not tie-breaks
        model.head.gate.w_gate.normal_(0.0, 1.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(s.mixture_batch, 3, s.mixture_image, s.mixture_image, generator=g).to(ctx.device)
    y = torch.randint(0, s.mixture_classes, (s.mixture_batch,), generator=g).to(ctx.device)
    amp_dtype = torch.bfloat16 if amp == "bfloat16" else None
    res = {p: _path_result(model, x, y, p, amp_dtype, rt) for p in ("grouped", "generic")}
    a, b = res["grouped"], res["generic"]
    names = list(a["grads"])
    grad_rel = {n: _rel(a["grads"][n], b["grads"][n]) for n in names}
    worst = max(grad_rel, key=grad_rel.get)
    flat = [torch.cat([r["grads"][n].flatten().double() for n in names]) for r in (a, b)]
    tol = TOLERANCES[amp]
    figures = {
        "variant": variant, "dtype": amp, "default_path": model.head.execution_path(ctx.device),
        "output_rel": _rel(a["logits"], b["logits"]),
        "output_max_abs": float((a["logits"] - b["logits"]).abs().max()),
        "input_grad_rel": _rel(a["input_grad"], b["input_grad"]),
        "param_grad_rel": _rel(*flat),  # all parameters' gradients as one vector
        "param_grad_rel_worst": grad_rel[worst], "param_grad_worst": worst,  # reported, not judged
        "routing_counts_equal": bool(torch.equal(a["counts"], b["counts"])),
        "importance_max_abs": float((a["importance"] - b["importance"]).abs().max()),
        "balance_rel": _rel(a["balance"], b["balance"]),
        "tol_output": tol["output"], "tol_grad": tol["grad"],
    }
    problems = []
    if not (math.isfinite(figures["output_rel"]) and figures["output_rel"] <= tol["output"]):
        problems.append(f"outputs differ by {figures['output_rel']:.2e} (tolerance {tol['output']:g})")
    for key in ("input_grad_rel", "param_grad_rel"):
        if not (math.isfinite(figures[key]) and figures[key] <= tol["grad"]):
            problems.append(f"{key} {figures[key]:.2e} > {tol['grad']:g}")
    if not figures["routing_counts_equal"]:
        problems.append("the paths routed samples to different components")
    figures["problems"] = problems
    return figures


def _where(exc: BaseException) -> str:
    """The innermost frames of ``exc`` inside gmsop (else the innermost frame), as file:line."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "gmsop" in f.filename and "device_check" not in f.filename] or frames[-1:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.line or f.name}" for f in reversed(ours[-3:]))


def sync_check(variant: str, ctx: Context) -> dict[str, Any]:
    """Forward of a training step under ``set_sync_debug_mode("error")`` (fp32 and bf16), then
    backward + SGD step under ``"warn"`` (counted, for information)."""
    import torch
    import torch.nn.functional as F

    from gmsop import build_model
    from gmsop.engine.loop import Runtime

    s = ctx.sizes
    torch.manual_seed(0)
    model = build_model(variant, num_classes=s.mixture_classes, **_variant_overrides(s)).to(ctx.device).train()
    rt = Runtime.for_device(ctx.device, amp=True)
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)  # the optimiser training uses
    x = rt.place(torch.randn(s.mixture_batch, 3, s.mixture_image, s.mixture_image, device=ctx.device))
    y = torch.randint(0, s.mixture_classes, (s.mixture_batch,), device=ctx.device)
    # warm-up, fp32 and bf16, one whole step: lazily built indices, cuBLAS handles, cuDNN plans
    # (autotuned once per shape) are one-time costs, not the per-step syncs looked for here
    for amp in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
    (F.cross_entropy(out.logits.float(), y) + out.balance_loss.float()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    figures: dict[str, Any] = {"variant": variant, "path": model.head.execution_path(ctx.device)}
    torch.cuda.set_sync_debug_mode("error")
    try:
        for amp in (False, True):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                out = model(x)
    except RuntimeError as exc:
        figures["forward_sync"] = f"{exc} at {_where(exc)}".strip()
        return figures
    finally:
        torch.cuda.set_sync_debug_mode(0)
    figures["forward_sync"] = None
    loss = F.cross_entropy(out.logits.float(), y) + out.balance_loss.float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    figures["backward_step_syncs"] = len(syncs)
    return figures


def mixture_paths(ctx: Context, run: PartRun) -> None:
    variants = ("GM-SOP-16-8", "GM-GAP-16-8")
    dtypes = ("bfloat16", "float32")
    rows = run.figures.setdefault("comparisons", [])
    for variant, amp in itertools.product(variants, dtypes):
        run.budget.check(f"comparing the paths of {variant} in {amp}")
        t0 = time.monotonic()
        try:
            fig = compare_paths(variant, ctx, amp)
        except Exception as exc:  # noqa: BLE001 - the other comparisons still run
            fig = {"variant": variant, "dtype": amp, "problems": [traceback_tail(exc, 1)], "error": traceback_tail(exc, 3)}
            rows.append(fig)
            run.fail(f"{variant} {amp}: {fig['problems'][0]}")
            continue
        finally:
            _free(ctx)
        fig["time_s"] = round(time.monotonic() - t0, 2)
        rows.append(fig)
        run.summary = f"{len(rows)}/{len(variants) * len(dtypes)} path comparisons done"  # so far
        verdict = "; ".join(fig["problems"]) or "agree"
        run.note(f"{variant} {amp}: output rel {fig['output_rel']:.1e}, grad rel {fig['param_grad_rel']:.1e} "
                 f"(worst parameter {fig['param_grad_rel_worst']:.1e}), "
                 f"routing {'equal' if fig['routing_counts_equal'] else 'DIFFERENT'} -> {verdict}")
        for problem in fig["problems"]:
            run.fail(f"{variant} {amp}: {problem}")
    if not ctx.cuda:
        run.figures["sync_check"] = "skipped: torch.cuda.set_sync_debug_mode needs CUDA"
    else:
        syncs = run.figures.setdefault("sync_check", [])
        for variant in variants:
            run.budget.check(f"the sync check of {variant}")
            try:
                fig = sync_check(variant, ctx)
            except Exception as exc:  # noqa: BLE001
                fig = {"variant": variant, "forward_sync": f"the check itself failed: {traceback_tail(exc, 1)}",
                       "error": traceback_tail(exc, 3)}
            finally:
                _free(ctx)
            syncs.append(fig)
            if fig["forward_sync"]:
                run.fail(f"{variant}: the forward synchronised host and device: {fig['forward_sync']}")
            else:
                run.note(f"{variant}: no sync in the forward ({fig['path']} path); backward + step: "
                         f"{fig['backward_step_syncs']} sync(s)")
    agree = sum(not r["problems"] for r in rows)
    if ctx.cuda:
        clean = sum(not f["forward_sync"] for f in run.figures["sync_check"])
        sync = f"{clean}/{len(variants)} forwards without host sync"
    else:
        sync = "sync check skipped (no CUDA)"
    run.summary = f"{agree}/{len(rows)} grouped-vs-generic comparisons (bf16, fp32) agree; {sync}"


def compile_graphs(ctx: Context, run: PartRun) -> None:
    """Graphs and graph breaks of ``torch.compile`` (``gmsop.compile_report``) for SR-SOP and
    GM-SOP-16-8 on the mixture's own default path and on the grouped one. A break means a return
    to Python (and on a GPU often a host sync) inside every step; SR-SOP and the grouped mixture
    path are expected to trace as one graph, the generic path breaks where it reads the routed
    batch sizes back to the host (by design)."""
    import torch

    from gmsop import build_model
    from gmsop.compile_report import compile_graph_count

    s = ctx.sizes
    rows = run.figures.setdefault("models", [])
    for variant, execution in (("SR-SOP", None), ("GM-SOP-16-8", "grouped"), ("GM-SOP-16-8", "generic")):
        run.budget.check(f"tracing {variant}" + (f" ({execution})" if execution else ""))
        try:
            torch.manual_seed(0)
            model = build_model(variant, num_classes=s.mixture_classes, **_variant_overrides(s)).to(ctx.device).train()
            if execution:
                model.head.execution = execution
            x = torch.randn(s.mixture_batch, 3, s.mixture_image, s.mixture_image, device=ctx.device)
            fig = {"variant": variant, "path": execution, **compile_graph_count(model, x, max_reasons=5)}
        except Exception as exc:  # noqa: BLE001 - the other models still run
            fig = {"variant": variant, "path": execution, "error": traceback_tail(exc, 3)}
            rows.append(fig)
            run.fail(f"{variant}: {traceback_tail(exc, 1)}")
            continue
        finally:
            _free(ctx)
        rows.append(fig)
        label = variant + (f" ({execution})" if execution else "")
        run.note(f"{label}: {fig['graph_count']} graph(s), {fig['graph_break_count']} break(s)")
        if execution != "generic" and fig["graph_break_count"]:
            run.fail(f"{label}: {fig['graph_break_count']} graph break(s), first: {fig['break_reasons'][:1]}")
    done = [r for r in rows if "graph_count" in r]
    run.summary = "; ".join(f"{r['variant']}{' ' + r['path'] if r['path'] else ''} {r['graph_count']} graph(s) / "
                            f"{r['graph_break_count']} break(s)" for r in done) or "nothing traced"


# ---------------------------------------------------------------------------------------------
# 3. train-smoke


def write_imagenet_release(root: Path, size: int, n_train: int, n_val: int, num_classes: int,
                           seed: int = 0, train_files: int = 2) -> dict[str, Any]:
    """Generated images in the downsampled-ImageNet release layout (what ``imagenet64`` reads).

    ``Imagenet{size}_train_part1_npz/train_data_batch_{1..}.npz`` and
    ``Imagenet{size}_val_npz/val_data.npz``, each with ``data`` uint8 (n, 3*size*size) as whole
    R, G, B planes, 1-based ``labels`` and (training files) ``mean``. Each class is a random
    4x4 colour pattern blown up to the image size under Gaussian noise (sd 40 of 255), so a
    network can learn it in a few dozen steps while no single pixel gives it away.
    """
    if size < 4:
        raise ValueError(f"image size must be >= 4 pixels, got {size}")
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (num_classes, 3, 4, 4)).astype(np.float32)
    idx = (np.arange(size) * 4) // size  # pixel -> pattern cell

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, num_classes, n)
        x = protos[labels][:, :, idx][:, :, :, idx] + rng.normal(0.0, 40.0, (n, 3, size, size))
        return np.clip(x, 0, 255).astype(np.uint8).reshape(n, -1), labels + 1  # (n, 3*S*S) planes, 1-based

    train_dir = root / f"Imagenet{size}_train_part1_npz"
    val_dir = root / f"Imagenet{size}_val_npz"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    per_file = [len(c) for c in np.array_split(np.arange(n_train), train_files)]
    for b, n in enumerate(per_file, start=1):
        data, labels = images(n)
        np.savez(train_dir / f"train_data_batch_{b}.npz", data=data, labels=labels, mean=data.mean(axis=0))
    data, labels = images(n_val)
    np.savez(val_dir / "val_data.npz", data=data, labels=labels)
    return {"root": str(root), "size": size, "train_images": n_train, "val_images": n_val,
            "num_classes": num_classes, "train_files": train_files}


def _learning_rate(variant: str, family: str | None) -> float:
    from gmsop.engine.config import DEFAULT_SCHEDULES, default_schedule

    return (DEFAULT_SCHEDULES[family] if family else default_schedule(variant))[0][0]


def smoke_train(variant: str, family: str | None, ctx: Context, root: Path, run: PartRun) -> dict[str, Any]:
    """One short epoch of ``variant`` through ``build_run`` (real reader, cache, DataPipeline,
    optimiser) and ``train_one_epoch``, in ``smoke_chunks`` chunks: loss of the first vs the last."""
    from gmsop.data import SubsetWarning
    from gmsop.engine.config import TrainConfig
    from gmsop.engine.loop import evaluate, train_one_epoch
    from gmsop.engine.trainer import build_run

    s = ctx.sizes
    lr = _learning_rate(variant, family) * s.lr_scale
    cfg = TrainConfig(variant=variant, dataset="imagenet64", data_root=str(root),
                      dataset_options={"size": s.image_size, "num_classes": s.num_classes,
                                       "cache_dir": str(ctx.work_dir / "cache")},
                      batch_size=s.batch_size, schedule=[(lr, 1)], device=str(ctx.device),
                      overrides=_variant_overrides(s), progress="none", seed=0)
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)  # a few thousand images: a "subset", on purpose
        r = build_run(cfg)
    steps = r.data.train_steps
    per_chunk = max(1, steps // s.smoke_chunks)
    chunks = []
    batches = r.data.train_batches(1)
    try:
        for c in range(s.smoke_chunks):
            n = per_chunk if c < s.smoke_chunks - 1 else steps - per_chunk * (s.smoke_chunks - 1)
            if n <= 0:
                break
            run.budget.check(f"{variant} chunk {c + 1}/{s.smoke_chunks}")
            chunks.append(train_one_epoch(r.forward, itertools.islice(batches, n), r.optimizer, r.runtime, epoch=1,
                                          steps=steps, num_experts=r.num_experts))
    finally:
        batches.close()
    val = evaluate(r.forward, r.data.val_batches(), r.runtime, num_classes=r.data.num_classes)
    warm = chunks[1:] or chunks
    samples = sum(c["train_samples"] for c in warm)
    seconds = sum(c["train_time_s"] for c in warm)
    return {
        "variant": variant, "lr": lr, "steps": steps, "batch_size": s.batch_size,
        "loss_first": chunks[0]["train_loss"], "loss_last": chunks[-1]["train_loss"],
        "ce_first": chunks[0]["train_ce"], "ce_last": chunks[-1]["train_ce"],
        "chunk_losses": [round(c["train_loss"], 4) for c in chunks],
        "img_s": samples / seconds if seconds > 0 else None,  # after the first chunk (cuDNN autotuning, warm-up)
        "val_top1_err": val["val_top1_err"],
        "params": r.params,  # FLOPs: the throughput part counts them
        "time_s": round(time.monotonic() - t0, 2),
    }


def train_smoke(ctx: Context, run: PartRun) -> None:
    s = ctx.sizes
    root = ctx.work_dir / "imagenet"
    t0 = time.monotonic()
    run.figures["data"] = write_imagenet_release(root, s.image_size, s.train_images, s.val_images, s.num_classes)
    run.figures["data"]["generate_s"] = round(time.monotonic() - t0, 2)
    run.summary = "data generated, no variant trained yet"
    run.figures["width_mult"] = s.width_mult
    rows = run.figures.setdefault("variants", [])
    for variant, family in TABLE2:
        run.budget.check(f"training {variant}")
        try:
            row = smoke_train(variant, family, ctx, root, run)
        except Exception as exc:  # noqa: BLE001 - one variant's failure must not hide the others' (a timeout
            # is a BaseException: it passes through to the runner)
            rows.append({"variant": variant, "error": traceback_tail(exc, 3)})
            run.fail(f"{variant}: {traceback_tail(exc, 1)}")
            continue
        finally:
            _free(ctx)
        rows.append(row)
        finite = all(math.isfinite(v) for v in row["chunk_losses"])
        fell = finite and row["loss_last"] < row["loss_first"]
        row["loss_fell"] = fell
        run.note(f"{variant:<18} loss {row['loss_first']:.3f} -> {row['loss_last']:.3f}  "
                 f"{row['img_s'] or 0:.0f} img/s  {row['time_s']:.1f} s")
        if not finite:
            run.fail(f"{variant}: non-finite loss {row['chunk_losses']}")
        elif not fell:
            run.fail(f"{variant}: loss did not fall ({row['loss_first']:.3f} -> {row['loss_last']:.3f})")
        ok = sum(1 for r in rows if r.get("loss_fell"))  # the summary so far (a timeout reports it)
        run.summary = (f"{ok}/{len(TABLE2)} variants: loss fell and stayed finite ({s.image_size}px, batch {s.batch_size}, "
                       f"width {s.width_mult:g})")


# ---------------------------------------------------------------------------------------------
# 4. throughput


def matmul_tflops(device, dtype, n: int, min_s: float) -> dict[str, Any]:
    """TFLOP/s of an (n x n) @ (n x n) matmul in ``dtype`` (2 n^3 FLOPs), timed for >= ``min_s``."""
    import torch

    from gmsop.engine.env import synchronize

    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        if reps % 4 == 0 or device.type == "cpu":
            synchronize(device)
            if time.perf_counter() - t0 >= min_s:
                break
    seconds = time.perf_counter() - t0
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "reps": reps, "seconds": round(seconds, 3),
            "tflops": 2.0 * n**3 * reps / seconds / 1e12}


def throughput(ctx: Context, run: PartRun) -> None:
    import torch

    from gmsop.engine.loop import Runtime
    from gmsop.engine.throughput import BenchConfig, measure_throughput

    s = ctx.sizes
    peaks = run.figures.setdefault("matmul", {})
    for dtype in (torch.bfloat16, torch.float32):
        run.budget.check(f"the {dtype} matmul")
        m = matmul_tflops(ctx.device, dtype, s.matmul_n, s.matmul_min_s)
        peaks[m["dtype"]] = m
        run.note(f"matmul {m['dtype']} {s.matmul_n}^2: {m['tflops']:.2f} TFLOP/s")
    if ctx.cuda:
        peaks["allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    # BenchConfig(amp=True) measures as training runs: bf16 autocast where Runtime.for_device
    # uses it (CUDA; a CPU with native bf16), float32 elsewhere. MFU is against that dtype's rate.
    peak_dtype = "bfloat16" if Runtime.for_device(ctx.device, amp=True).amp_dtype is not None else "float32"
    run.figures["convention"] = (
        "achieved FLOP/s = 3 x forward FLOPs (gmsop.flops, 2 per multiply-add) x training img/s (backward ~ 2 x "
        f"forward); MFU = achieved / this run's {peak_dtype} matmul rate"
        + (" (bf16 autocast; the second-order layers run in float32, so MFU understates their use)"
           if peak_dtype == "bfloat16" else "")
    )
    run.figures["peak_memory"] = ("torch.cuda.max_memory_allocated over the training and inference steps" if ctx.cuda
                                  else "host peak RSS of the whole process (ru_maxrss; cannot be reset per variant)")
    rows = run.figures.setdefault("variants", [])
    for variant, _ in TABLE2:
        run.budget.check(f"benchmarking {variant}")
        cfg = BenchConfig(variant=variant, input_size=(3, s.image_size, s.image_size), num_classes=s.bench_classes,
                          batch_size=s.batch_size, warmup=s.bench_warmup, steps=s.bench_steps, device=str(ctx.device),
                          overrides=_variant_overrides(s), amp=True)
        try:
            b = measure_throughput(cfg)
        except Exception as exc:  # noqa: BLE001
            rows.append({"variant": variant, "error": traceback_tail(exc, 3)})
            run.fail(f"{variant}: {traceback_tail(exc, 1)}")
            continue
        finally:
            _free(ctx)
        row = {k: b[k] for k in ("variant", "train_img_s", "infer_img_s", "train_step_ms_median", "train_step_ms_iqr",
                                  "peak_mem_mb", "peak_mem_kind", "flops_per_image", "achieved_tflops", "params")}
        row["mfu"] = b["achieved_tflops"] / peaks[peak_dtype]["tflops"]
        rows.append(row)
        run.summary = f"{len(rows)}/{len(TABLE2)} variants benchmarked"  # so far (a timeout reports it)
        run.note(f"{variant:<18} train {row['train_img_s']:.0f} img/s, infer {row['infer_img_s']:.0f} img/s, "
                 f"{row['achieved_tflops']:.3f} TFLOP/s, MFU {100 * row['mfu']:.1f}%, peak {row['peak_mem_mb']:.0f} MB")
    done = [r for r in rows if "mfu" in r]
    best = max(done, key=lambda r: r["mfu"]) if done else None
    run.summary = (f"{len(done)}/{len(TABLE2)} variants measured; {peak_dtype} matmul "
                   f"{peaks[peak_dtype]['tflops']:.2f} TFLOP/s"
                   + (f"; best MFU {100 * best['mfu']:.1f}% ({best['variant']})" if best else ""))


# ---------------------------------------------------------------------------------------------
# 5. snakemake-slots

_PROBE = '''"""A gpu=1 job: what GPU the slot allocator gave it, and when it ran."""
import json, os, sys, time
start = time.time()
time.sleep(1.0)  # long enough that two jobs running at once would overlap visibly
with open(sys.argv[1], "w") as fh:
    json.dump({"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
               "start": start, "end": time.time()}, fh)
'''


def _snakefile(python: str) -> str:
    cmd = f"{shlex.quote(python)} -m gmsop.gpu_slots -n 1 -- {shlex.quote(python)} probe.py".replace("{", "{{").replace("}", "}}")
    rules = "\n".join(
        f'rule {name}:\n    output: "{name}.json"\n    resources: gpu=1\n    shell: "{cmd} {{output}}"\n'
        for name in ("job_a", "job_b")
    )
    return f'rule all:\n    input: "job_a.json", "job_b.json"\n\n{rules}'


def snakemake_slots(ctx: Context, run: PartRun) -> None:
    if importlib.util.find_spec("snakemake") is None:
        run.skip("snakemake is not installed in this Python (pip install -e '.[workflow]')")
    from gmsop.gpu_slots import visible_gpus

    project = ctx.work_dir / "snakemake"
    project.mkdir(parents=True, exist_ok=True)
    (project / "Snakefile").write_text(_snakefile(sys.executable))
    (project / "probe.py").write_text(_PROBE)
    locks = project / "locks"  # private: the check neither waits for nor blocks other jobs' GPUs
    env = _subprocess_env(GMSOP_GPU_LOCK_DIR=str(locks))
    env.pop("SNAKEMAKE_PROFILE", None)
    env.pop("GMSOP_GPU_SLOTS", None)
    pool = visible_gpus()
    if not pool:  # no GPU here: one pretend slot, so the lock path still runs
        env["GMSOP_NUM_GPUS"] = "1"
        env.pop("CUDA_VISIBLE_DEVICES", None)  # an empty pool set by hand would refuse the count
    run.figures["gpus_visible"] = pool
    run.figures["mode"] = ("real GPUs" if pool else
                           "no GPU on this machine, where the allocator stands aside and leaves CUDA_VISIBLE_DEVICES "
                           "unset; GMSOP_NUM_GPUS=1 makes it lock one pretend slot '0' instead")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(project / "Snakefile"), "--directory", str(project),
           "--cores", "2", "--resources", "gpu=1"]
    run.figures["command"] = shlex.join(cmd)
    run.note(f"snakemake --cores 2 --resources gpu=1, two gpu=1 jobs ({'GPUs ' + ','.join(pool) if pool else 'pretend slot 0'})")
    log = ctx.out_dir / "snakemake_slots.log"
    try:
        res = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                             timeout=max(1.0, run.budget.remaining()))
    except subprocess.TimeoutExpired as exc:
        raise _timeout(run, "snakemake", exc) from None
    log.write_text(res.stdout + res.stderr)
    run.figures["log"] = str(log)
    run.figures["returncode"] = res.returncode
    run.figures["allocator_messages"] = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if "gmsop.gpu_slots" in ln]
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-5:])
        run.fail(f"snakemake exited {res.returncode}: {tail}")
        return
    jobs = {}
    for name in ("job_a", "job_b"):
        path = project / f"{name}.json"
        if not path.exists():
            run.fail(f"{name} wrote no {path.name}")
            continue
        jobs[name] = json.loads(path.read_text())
    run.figures["jobs"] = jobs
    if len(jobs) < 2:
        return
    a, b = jobs["job_a"], jobs["job_b"]
    serial = a["end"] <= b["start"] or b["end"] <= a["start"]
    run.figures["serial"] = serial
    if not serial:
        run.fail(f"the two gpu=1 jobs overlapped in time ({a['start']:.2f}-{a['end']:.2f} and {b['start']:.2f}-{b['end']:.2f})")
    ids = {n: j["cuda_visible_devices"] for n, j in jobs.items()}
    expected = pool or ["0"]
    for name, dev in ids.items():
        if not dev or dev not in expected:
            run.fail(f"{name} saw CUDA_VISIBLE_DEVICES={dev!r}, expected one of {expected}")
    run.summary = (f"2 jobs ran {'one after the other' if serial else 'AT ONCE'}, GPU ids "
                   f"{ids['job_a']!r} and {ids['job_b']!r}" + ("" if pool else " (pretend slot: no GPU here)"))


# ---------------------------------------------------------------------------------------------

#: Every part, in the order they run; weights are shares of the time budget (480 s on CUDA:
#: about 45 s for the tests, 50 s for the paths, 165 s for training, 165 s for throughput).
PARTS: tuple[Part, ...] = (
    Part("cuda-tests", cuda_tests, 0.10, "pytest -m cuda in a subprocess: the tests that skip without CUDA"),
    Part("mixture-paths", mixture_paths, 0.10,
         "grouped vs generic mixture paths agree (bf16 and fp32); no host sync in the forward (CUDA)"),
    Part("compile-graphs", compile_graphs, 0.06,
         "torch.compile graphs and breaks of SR-SOP and GM-SOP-16-8 (grouped and generic paths)"),
    Part("train-smoke", train_smoke, 0.33,
         "one short epoch of every Table-2 variant through the imagenet64 reader, cache and trainer"),
    Part("throughput", throughput, 0.33, "gmsop bench of every Table-2 variant, matmul peak and MFU"),
    Part("snakemake-slots", snakemake_slots, 0.08, "two gpu=1 Snakemake jobs through gmsop.gpu_slots"),
)
