"""Training img/s of the embedded default's networks on this CPU, per runtime setting, side by side.

What is measured: the real training step of the engine (``gmsop.engine.loop.train_one_epoch``:
forward, cross-entropy + balance loss, backward, SGD) over real batches of the default dataset
(``synthetic``, 32 px, through ``DataPipeline``: loader, augmentation, normalisation), for each
distinct network the embedded default trains (every (variant, backbone) of ``config.yaml``'s
plan; width 0.25, batch 64) and each runtime:

* ``fp32``       float32, contiguous (NCHW) tensors: the CPU default before these runtimes were measured;
* ``bf16``       bf16 autocast of the forward (second-order pooling kept in float32);
* ``cl``         channels_last (NHWC) model and inputs, float32;
* ``bf16+cl``    both.

A setting may end in ``@B`` to train at batch B instead of ``--batch-size`` (e.g.
``bf16+cl@128``): img/s at a larger batch, still side by side.

The settings run in turns, round after round (the machine is shared and noisy: only ratios
measured side by side in one run are trusted), and the median img/s per setting is compared
with ``fp32``'s. One thread by default, as the default DAG's jobs run (``threads_per_job: 1``).

    python benchmarks/bench_cpu_training.py                      # every default network
    python benchmarks/bench_cpu_training.py --variants ResNet-18 GM-SOP-16-8 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def default_networks(config_path: str) -> list[tuple[str, str, str]]:
    """(label, variant, backbone) of every distinct network a workflow config trains, in plan order."""
    import yaml

    from gmsop.experiments import make_plan

    with open(config_path, encoding="utf-8") as f:
        plan = make_plan(yaml.safe_load(f))
    seen: dict[tuple[str, str], str] = {}
    for spec in plan.runs.values():
        key = (spec["variant"], spec["backbone"])
        if key not in seen:
            seen[key] = (
                spec["variant"]
                if spec["backbone"] == "resnet18"
                else f"{spec['variant']} + {spec['backbone']}"
            )
    return [(label, v, b) for (v, b), label in seen.items()]


SETTINGS = {
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "cl": (None, True),
    "bf16+cl": (torch.bfloat16, True),
}


def _step_runner(variant: str, backbone: str, setting: str, batches: list, width: float, num_classes: int):
    """A closure that trains over ``batches`` once with the given runtime; returns img/s."""
    from gmsop import build_model
    from gmsop.engine.loop import Runtime, train_one_epoch

    amp_dtype, channels_last = SETTINGS[setting.split("@")[0]]
    torch.manual_seed(0)
    model = build_model(variant, backbone=backbone, num_classes=num_classes, width_mult=width)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    rt = Runtime(torch.device("cpu"), amp_dtype, channels_last=channels_last)
    head = getattr(model, "head", None)
    experts = int(head.num_experts) if getattr(head, "gate", None) is not None else None

    def run() -> float:
        stats = train_one_epoch(model, iter(batches), opt, rt, epoch=1, num_experts=experts)
        return stats["train_img_s"]

    run()  # warm-up: oneDNN primitive creation, allocator
    return run


def _setting(text: str) -> str:
    name, _, batch = text.partition("@")
    if name not in SETTINGS or (batch and not batch.isdigit()):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected one of {list(SETTINGS)}, optionally @BATCH (e.g. bf16+cl@128)"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", default="config.yaml", help="workflow config whose networks are measured (config.yaml)"
    )
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="labels of the config's networks to measure (default: all)",
    )
    p.add_argument(
        "--settings",
        nargs="*",
        default=list(SETTINGS),
        type=_setting,
        help=f"runtimes, each one of {list(SETTINGS)}, optionally @BATCH (default: all at --batch-size)",
    )
    p.add_argument("--steps", type=int, default=6, help="training steps per measurement (6)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all settings in turn (3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch (64, the default's)")
    p.add_argument("--width", type=float, default=0.25, help="width_mult (0.25, the default's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1, as the default DAG's jobs)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from gmsop.data import get_dataset
    from gmsop.engine.data import DataPipeline

    sizes = {s: int(s.partition("@")[2] or args.batch_size) for s in args.settings}
    ds = get_dataset(
        "synthetic", None, classes=16, n_train=max(sizes.values()) * args.steps, n_val=64, size=32, seed=0
    )
    batches = {}  # per batch size: the same images, `steps` batches of the largest size
    for b in set(sizes.values()):
        data = DataPipeline(ds, b, seed=0, device=torch.device("cpu"))
        batches[b] = list(data.train_batches(1))
    networks = default_networks(args.config)
    nets = [n for n in networks if args.variants is None or n[0] in args.variants]
    if not nets:
        p.error(f"--variants: none of {args.variants} is one of {[n[0] for n in networks]}")
    print(
        f"# torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, "
        f"width {args.width}, "
        f"32 px, {args.steps} steps x {args.rounds} rounds, median img/s",
        flush=True,
    )
    rows = []
    for label, variant, backbone in nets:
        t0 = time.perf_counter()
        runners = {
            s: _step_runner(variant, backbone, s, batches[sizes[s]], args.width, data.num_classes)
            for s in args.settings
        }
        rates: dict[str, list[float]] = {s: [] for s in args.settings}
        for _ in range(args.rounds):
            for s, run in runners.items():
                rates[s].append(run())
        med = {s: statistics.median(v) for s, v in rates.items()}
        base = med.get("fp32")
        cells = "  ".join(
            f"{s} {med[s]:7.0f}" + (f" (x{med[s] / base:.2f})" if base and s != "fp32" else "")
            for s in args.settings
        )
        print(f"{label:<24} {cells}   [{time.perf_counter() - t0:.0f} s]", flush=True)
        rows.append((label, med))
    if "fp32" in args.settings and len(args.settings) > 1:
        for s in args.settings:
            if s != "fp32":
                ratios = [med[s] / med["fp32"] for _, med in rows]
                print(
                    f"# {s} / fp32: geometric mean x{statistics.geometric_mean(ratios):.2f} "
                    f"over {len(rows)} networks"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
