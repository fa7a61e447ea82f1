"""``gmsop preflight``: train every distinct network of a workflow config for a few dozen steps
and say whether it trains, with the reason; minutes on a CPU instead of a dead row's GPU-hours.

Each network runs at its config's width, batch, first learning rate (``lr_scaling`` applied),
protocol and input size, on ``synthetic`` data of its dataset's class count. Loss alone cannot
tell a dead row from a slow start, so the verdict (the first rule that applies) also reads the
gradient norm and the share of live units after the backbone's last ReLU:
diverged: a non-finite loss; collapsed: under 10% of units alive at the end (or under half of
those alive at the start), or end gradient norm < 1e-4 x start; diverged: a loss above
2 ln(classes); collapsed: one class for >= 90% of a batch at a loss of ln(classes); ok: the loss
fell by 5% of ln(classes) (first 2 steps against the last quarter); else too slow to tell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from gmsop.atomic import atomic_write_json
from gmsop.engine.loop import forward_loss
from gmsop.engine.trainer import build_run
from gmsop.experiments import make_plan
from gmsop.pipeline import train_config
from gmsop.plan import dataset_facts

#: thresholds of the verdicts (module docstring)
DIVERGE_FACTOR, DEAD_FRACTION, DYING_RATIO = 2.0, 0.10, 0.5
VANISHED_RATIO, ONE_CLASS_SHARE, MIN_DROP = 1e-4, 0.90, 0.05
NETWORK_KEYS = ("variant", "backbone", "protocol", "batch_size", "lr_scaling", "width_mult", "overrides")


@dataclass
class PreflightResult:
    label: str  # the rows it stands for ("table2: ResNet-18-8256d", ...)
    variant: str
    backbone: str
    width_mult: float
    batch_size: int
    lr: float  # the first learning rate as trained (lr_scaling applied)
    classes: int
    input_size: int
    steps: int
    losses: list[float]
    grad_norms: list[float]
    live_units: list[float]
    top_class_share: list[float]  # share of the batch predicted as its most frequent class
    seconds: float
    verdict: str = ""
    reason: str = ""


def verdict(
    losses: list[float], norms: list[float], live: list[float], share: list[float], classes: int
) -> tuple[str, str]:
    """(verdict, reason) from per-step records (module docstring: the rules, in that order)."""
    ln_c = math.log(classes)
    if bad := [i for i, v in enumerate(losses, start=1) if not math.isfinite(v)]:
        return "diverged", f"loss not finite at step {bad[0]}"
    if live[-1] < DEAD_FRACTION:
        return "collapsed", f"{100 * live[-1]:.0f}% of the backbone's last-ReLU units alive at the end"
    if live[-1] < DYING_RATIO * live[0]:
        return "collapsed", (
            f"the backbone's last-ReLU units are dying: {100 * live[0]:.0f}% alive at the "
            f"start, {100 * live[-1]:.0f}% at the end"
        )
    if norms[0] > 0 and norms[-1] < VANISHED_RATIO * norms[0]:
        return "collapsed", f"gradients vanished (norm {norms[0]:.3g} -> {norms[-1]:.3g})"
    peak = max(losses)
    if peak > DIVERGE_FACTOR * ln_c:
        step = losses.index(peak) + 1
        return "diverged", (
            f"loss peaked at {peak:.2f} at step {step} (> {DIVERGE_FACTOR:g} ln {classes} = "
            f"{DIVERGE_FACTOR * ln_c:.2f}), ended at {losses[-1]:.2f}"
        )
    tail = max(2, len(losses) // 4)
    start, end = sum(losses[:2]) / len(losses[:2]), sum(losses[-tail:]) / tail
    if share[-1] >= ONE_CLASS_SHARE and abs(end - ln_c) < MIN_DROP * ln_c:
        return "collapsed", (
            f"predicts one class for {100 * share[-1]:.0f}% of the batch at the prior's loss "
            f"({end:.2f} ~ ln {classes})"
        )
    if start - end >= MIN_DROP * ln_c:
        return "ok", (
            f"loss {start:.2f} -> {end:.2f} (ln {classes} = {ln_c:.2f}), {100 * live[-1]:.0f}% units alive"
        )
    return "too slow to tell", (
        f"loss {start:.2f} -> {end:.2f} (ln {classes} = {ln_c:.2f}); alive "
        f"({100 * live[-1]:.0f}% units, gradient norm {norms[-1]:.3g}): more steps"
    )


def preflight_network(
    spec: dict[str, Any],
    classes: int,
    input_size: int,
    steps: int = 24,
    device: str = "auto",
    seed: int = 0,
    label: str = "",
) -> PreflightResult:
    """Train one planned network (a run spec of gmsop.experiments) for ``steps`` SGD steps on
    generated data of ``classes`` classes at ``input_size`` px and judge it (:func:`verdict`)."""
    batch, textures = int(spec["batch_size"]), 4
    while math.comb(textures * 4, 3) < classes:  # classes distinct mode sets (4 colours, 3 modes each)
        textures *= 2
    options = dict(classes=int(classes), n_train=batch * int(steps), n_val=batch, size=int(input_size))
    options.update(seed=seed, textures=textures)
    cfg = train_config(
        spec, {"name": "synthetic", "options": options}, seed, out="-", ckpt_dir="-", device=device
    )
    run = build_run(dataclasses.replace(cfg, out=None, ckpt_dir=None, progress="none"))
    lr = cfg.lr_at(1)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    live: list[float] = []
    hook = run.model.backbone.register_forward_hook(
        lambda _m, _i, out: live.append(float((out.detach() > 0).flatten(2).any(dim=2).float().mean()))
    )
    losses, norms, shares = [], [], []
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.model.train()
    t0 = time.perf_counter()
    try:
        for step, (x, y) in enumerate(run.data.train_batches(1), start=1):
            out, ce, balance = forward_loss(run.forward, run.runtime.place(x), y, run.runtime)
            loss = ce + balance
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            norms.append(float(torch.stack(grads).norm()) if grads else 0.0)
            losses.append(float(loss.detach()))
            shares.append(float(out.logits.argmax(dim=1).bincount().max()) / y.shape[0])
            if not math.isfinite(losses[-1]):
                break
            run.optimizer.step()
            if step >= steps:
                break
    finally:
        hook.remove()
    seconds, live = time.perf_counter() - t0, live[: len(losses)]
    variant, backbone, width = spec["variant"], str(spec["backbone"]), float(spec.get("width_mult") or 1.0)
    sizes = (batch, lr, int(classes), int(input_size), len(losses))
    judged = verdict(losses, norms, live, shares, classes)
    return PreflightResult(
        label or variant, variant, backbone, width, *sizes, losses, norms, live, shares, seconds, *judged
    )


def networks(config: dict) -> list[tuple[str, dict, int, int]]:
    """(label, run spec, classes, input size) per distinct network of a workflow ``config``
    (labels list every experiment row it stands for); a dataset whose class count or input size
    is not known without its files raises ValueError naming it."""
    plan = make_plan(config)
    found: dict[str, tuple[list[str], dict, int, int]] = {}
    for exp in plan.experiments.values():
        for row in (r for r in exp.rows if not r.rule):
            spec = plan.runs[row.run]
            facts = dataset_facts(config["datasets"][spec["dataset"]], spec.get("augment"))
            if facts.num_classes is None or facts.input_size is None:
                raise ValueError(
                    f"dataset {spec['dataset']!r}: {facts.note}; preflight needs its classes and input size"
                )
            # what makes a network distinct for a preflight: everything but its dataset's content
            net = {k: spec.get(k) for k in NETWORK_KEYS} | {"lr": spec["schedule"][0][0]}
            key = json.dumps([net, facts.num_classes, facts.input_size], sort_keys=True, default=str)
            entry = found.setdefault(key, ([], spec, int(facts.num_classes), int(facts.input_size[0])))
            entry[0].append(f"{exp.name}: {row.label}")
    return [(", ".join(labels), spec, c, s) for labels, spec, c, s in found.values()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="gmsop preflight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--config", required=True, help="a workflow config (config.yaml, workflow/configs/paper-*.yaml)")
    add(
        "--steps",
        type=int,
        default=24,
        help="SGD steps per network (default: 24); shrink steps, never width or batch, to fit a CPU",
    )
    add("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    add(
        "--only",
        action="append",
        metavar="TEXT",
        help="only networks whose label or variant contains TEXT (repeatable)",
    )
    add("--json", metavar="FILE", help="also write every network's per-step records to FILE")
    args = p.parse_args(argv)
    if args.steps < 4:
        p.error(f"--steps must be >= 4, got {args.steps}")
    try:
        config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{args.config}: a workflow config must be a mapping")
        config.setdefault("defaults", {}).setdefault("width_mult", 1.0)
        todo = networks(config)
    except (OSError, ValueError) as err:
        print(f"gmsop preflight: {err}", file=sys.stderr)
        return 2
    if args.only:
        todo = [n for n in todo if any(t in n[0] or t in n[1]["variant"] for t in args.only)]
    what = "on generated data of each dataset's classes and input size"
    print(f"{len(todo)} networks, {args.steps} steps each, {what}", flush=True)
    results, t0 = [], time.perf_counter()
    for i, (label, spec, classes, size) in enumerate(todo, start=1):
        r = preflight_network(spec, classes, size, steps=args.steps, device=args.device, label=label)
        results.append(r)
        print(
            f"[{i}/{len(todo)}] {r.verdict:<16} {r.variant} on {r.backbone} (width {r.width_mult:g}, batch "
            f"{r.batch_size}, lr {r.lr:g}, {classes} classes, {size} px, {r.seconds:.0f} s): {r.reason}"
            f"\n      for {label}",
            flush=True,
        )
    verdicts = ("ok", "too slow to tell", "collapsed", "diverged")
    counts = {v: sum(r.verdict == v for r in results) for v in verdicts}
    print(f"done in {time.perf_counter() - t0:.0f} s: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    if args.json:
        atomic_write_json(args.json, [asdict(r) for r in results])
    return 1 if counts["collapsed"] or counts["diverged"] else 0
