"""The epoch loop: build data and model from a TrainConfig, train, checkpoint, resume, report.

A resume restores model, optimiser, RNG states and epoch records from ``<ckpt_dir>/last.pt`` (else
``previous.pt``) once its fingerprint (config, content hash of file-backed data) matches. Each epoch
saves the checkpoint before its progress line; metrics.json is written only after the last epoch.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from gmsop.atomic import append_json_line, atomic_write_bytes, atomic_write_json, remove_stale_temps, to_json
from gmsop.data import get_dataset
from gmsop.data.content import content_fingerprint
from gmsop.engine import env
from gmsop.engine.checkpoint import check_fingerprint, resume_checkpoint, save_checkpoint
from gmsop.engine.config import TrainConfig
from gmsop.engine.data import DataPipeline
from gmsop.engine.loop import NonFiniteLossError, Runtime, evaluate, train_one_epoch
from gmsop.flops import count_params
from gmsop.formats import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    EPOCH_KEYS,
    METRICS_FORMAT,
    PROGRESS_NAME,
    check_metrics,
)
from gmsop.registry import build_model, parse_variant


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


class Progress:
    """A run's progress on stderr (``mode`` auto, bar, lines or none): a tqdm bar on a terminal, one line
    per epoch in a log (a bar's carriage returns would fill a Snakemake or SLURM log)."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self._bar = None

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode != "none":
            print(text, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int, lr: float) -> None:
        if self.mode != "bar":
            return
        self._bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{epochs} lr {lr:g}",
            unit="batch",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def step(self, loss: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, record: dict[str, Any], epochs: int, eta_s: float) -> None:
        self.close()
        h, rem = divmod(round(eta_s), 3600)
        self.message(
            f"epoch {record['epoch']}/{epochs} lr {record['lr']:g} "
            f"loss {_fmt(record['train_loss'], '.4f')} (ce {_fmt(record['train_ce'], '.4f')} "
            f"bal {_fmt(record['train_balance'], '.4f')}) train top1 {_fmt(record['train_top1_err'])}% "
            f"val top1 {_fmt(record['val_top1_err'])}% top5 {_fmt(record['val_top5_err'])}% "
            f"| {_fmt(record['train_img_s'], '.1f')} img/s | {record['epoch_time_s']:.1f} s "
            f"| ETA {h}:{rem // 60:02d}:{rem % 60:02d}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class UnwritableOutputError(OSError):
    """The metrics file or checkpoint folder cannot be written (found before training starts)."""


def check_writable(out: Path | None, ckpt_dir: Path | None) -> None:
    """Create the folders of ``out`` and ``ckpt_dir`` and probe them: fail now, not after training."""
    if out is not None and out.is_dir():
        raise UnwritableOutputError(
            f"the output {out} is a folder; --out names the metrics.json file to write"
        )
    for what, folder in (("output folder", out and out.parent), ("checkpoint folder", ckpt_dir)):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder, prefix=".gmsop-write-probe-"):
                pass
        except OSError as exc:
            raise UnwritableOutputError(
                f"cannot write the {what} {folder} ({exc.strerror or type(exc).__name__}); "
                "choose a writable location"
            ) from None


@dataclasses.dataclass
class Run:
    """Everything a training run holds in memory (what ``build_run`` assembles)."""

    config: TrainConfig
    runtime: Runtime
    data: DataPipeline
    model: torch.nn.Module  # the uncompiled module: state_dict keys stay stable
    forward: torch.nn.Module  # what the loop calls (compiled or the same module)
    optimizer: torch.optim.SGD
    schedule: list[tuple[float, int]]
    num_experts: int | None


def build_run(cfg: TrainConfig) -> Run:
    """Device, determinism, data, then the seeded model and its optimiser; ValueError for a bad setting."""
    parse_variant(cfg.variant)  # an unknown variant fails before a large dataset is loaded
    schedule = cfg.resolved_schedule()
    device = env.resolve_device(cfg.device)
    env.configure_determinism(cfg.deterministic, device)
    ds = get_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    data = DataPipeline(ds, cfg.batch_size, cfg.seed, device, cfg.max_train_batches, cfg.input_norm)

    env.seed_everything(cfg.seed)
    model = build_model(
        cfg.variant,
        backbone=cfg.backbone,
        num_classes=data.num_classes,
        protocol=cfg.protocol,
        dropout=cfg.dropout,
        **cfg.overrides,
    )
    rt = Runtime.for_device(device, amp=cfg.amp)
    forward = rt.prepare(model, cfg.compile)
    weight_decay = cfg.weight_decay if cfg.weight_decay is not None else float(model.protocol.weight_decay)
    # Weight decay on every parameter (BN and biases included), as plain SGD in PyTorch and
    # MatConvNet's default apply it; the released configs set no per-layer exceptions.
    optimizer = torch.optim.SGD(
        model.parameters(), lr=schedule[0][0], momentum=cfg.momentum, weight_decay=weight_decay
    )
    head = getattr(model, "head", None)
    num_experts = int(head.num_experts) if getattr(head, "gate", None) is not None else None
    return Run(cfg, rt, data, model, forward, optimizer, schedule, num_experts)


def train(cfg: TrainConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train (or resume, or just re-report a finished run) and return the metrics object."""
    progress = progress or Progress(cfg.progress)
    ckpt_dir = cfg.resolved_ckpt_dir()
    out = Path(cfg.out) if cfg.out else None
    check_writable(out, ckpt_dir)  # before any work
    ckpt_path = ckpt_dir / CHECKPOINT_NAME if ckpt_dir else None
    fingerprint = cfg.fingerprint(env.resolve_device(cfg.device).type)
    # the data a checkpoint was trained on, wherever its root is now
    if (content := content_fingerprint(cfg.dataset, cfg.data_root, cfg.dataset_options)) is not None:
        fingerprint["data_content"] = content
    ckpt, loaded, note = resume_checkpoint(ckpt_dir) if ckpt_dir is not None else (None, None, None)
    if ckpt is not None:
        check_fingerprint(ckpt, fingerprint, loaded)  # before loading a possibly large dataset
    if out is not None:
        remove_stale_temps(out)
    if ckpt_dir is not None:
        for name in (CHECKPOINT_NAME, PROGRESS_NAME, CONFIG_NAME):
            remove_stale_temps(ckpt_dir / name)  # a kill -9 during a write leaves one behind

    run = build_run(cfg)
    records, totals, start = [], {"train_samples": 0, "train_seconds": 0.0}, 0
    if ckpt is not None:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        env.restore_rng_state(ckpt["rng"])
        records, totals, start = list(ckpt["records"]), dict(ckpt["totals"]), int(ckpt["epoch"])
        del ckpt
        if note:
            progress.message(note)
        progress.message(f"resuming {cfg.variant} from {loaded} after epoch {start}/{cfg.epochs}")
    if out is not None and start < cfg.epochs:
        out.unlink(missing_ok=True)  # data and checkpoint are good: the run trains again, its old result goes
    if ckpt_dir is not None:
        atomic_write_json(ckpt_dir / CONFIG_NAME, {"config": cfg.to_dict(), "fingerprint": fingerprint})
        atomic_write_bytes(
            ckpt_dir / PROGRESS_NAME, "".join(to_json(_epoch_line(r), indent=None) for r in records).encode()
        )

    if start < cfg.epochs:
        progress.message(
            f"training {run.model.info['variant']} on {run.model.info['backbone']} "
            f"({count_params(run.model) / 1e6:.2f}M params) |  {cfg.dataset}: {run.data.train_size} train / "
            f"{run.data.val_size} val, {run.data.num_classes} classes, input {run.data.input_size} | "
            f"{run.runtime.device} {cfg.epochs} epochs, batch {cfg.batch_size}"
        )
        progress.message(f"data: {run.data.placement}")
    try:
        for epoch in range(start + 1, cfg.epochs + 1):
            record, epoch_totals = _run_epoch(run, epoch, progress, ckpt_path)
            records.append(record)
            totals = {k: totals[k] + epoch_totals[k] for k in totals}
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch,
                        "model": run.model.state_dict(),
                        "optimizer": run.optimizer.state_dict(),
                        "rng": env.capture_rng_state(),
                        "records": records,
                        "totals": totals,
                    },
                )
                append_json_line(ckpt_dir / PROGRESS_NAME, _epoch_line(record))
            eta = sum(r["epoch_time_s"] for r in records[start:]) / (epoch - start) * (cfg.epochs - epoch)
            progress.end_epoch(record, cfg.epochs, eta)
    finally:
        progress.close()

    metrics = check_metrics(_metrics(run, records, totals), out or "metrics.json")
    if out is not None:
        atomic_write_json(out, metrics)
    return metrics


def _run_epoch(
    run: Run, epoch: int, progress: Progress, ckpt_path: Path | None
) -> tuple[dict[str, Any], dict[str, float]]:
    cfg = run.config
    lr = cfg.lr_at(epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    t0 = time.perf_counter()
    steps = run.data.train_steps
    progress.start_epoch(epoch, cfg.epochs, steps, lr)
    try:
        tr = train_one_epoch(
            run.forward,
            run.data.train_batches(epoch),
            run.optimizer,
            run.runtime,
            epoch=epoch,
            steps=steps,
            num_experts=run.num_experts,
            progress=progress,
        )
    except NonFiniteLossError as err:
        kept = (
            f"; the last good checkpoint ({ckpt_path}, after epoch {epoch - 1}) is kept"
            if ckpt_path is not None and epoch > 1
            else "; no checkpoint was written"
        )
        raise NonFiniteLossError(
            err.epoch, err.step, steps, err.value, f" (lr {lr:g}); training stopped, no metrics written{kept}"
        ) from None
    val = {}
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        val = evaluate(
            run.forward,
            run.data.val_batches(),
            run.runtime,
            num_classes=run.data.num_classes,
            num_experts=run.num_experts,
        )
    values = {**tr, **val, "epoch": epoch, "lr": lr, "epoch_time_s": time.perf_counter() - t0}
    record = _epoch_line(values)
    if val and epoch == cfg.epochs:  # what each component learned: metrics.json's "final"
        record.update(val_routing=val["val_routing"], val_class_counts=val["val_class_counts"])
    return record, {"train_samples": tr["train_samples"], "train_seconds": tr["train_time_s"]}


def _epoch_line(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record as metrics.json and progress.jsonl show it (without the final routing)."""
    return {k: record.get(k) for k in EPOCH_KEYS}  # get: a checkpoint from before a key existed


def _metrics(run: Run, records: list[dict[str, Any]], totals: dict[str, float]) -> dict[str, Any]:
    """The metrics.json object (its layout is declared in gmsop.formats)."""
    cfg, info, data, last = run.config, run.model.info, run.data, records[-1]
    hparams = {
        "batch_size": cfg.batch_size,
        "schedule": [list(p) for p in run.schedule],
        "lr_scaling": cfg.lr_scaling,
        "lr_factor": cfg.lr_factor(),
        "epochs": cfg.epochs,
        "weight_decay": run.optimizer.param_groups[0]["weight_decay"],
        "momentum": cfg.momentum,
        "overrides": dict(cfg.overrides),
        "dataset_options": dict(cfg.dataset_options),
        "protocol_switches": dict(info["protocol_switches"]),
        "alpha_eff": run.model.protocol.effective_alpha(cfg.batch_size),
        "head": info["head"],
        "head_kwargs": dict(info["head_kwargs"]),
        "last_stride": info["last_stride"],
        "width_mult": info.get("width_mult", 1.0),
        "dropout": info["dropout"],
        "num_classes": data.num_classes,
        "input_size": [3, *data.input_size],
        "train_size": data.train_size,
        "val_size": data.val_size,
        "augment": data.augment_summary,
        "eval_every": cfg.eval_every,
        "max_train_batches": cfg.max_train_batches,
        "amp": run.runtime.amp_dtype is not None,
        "compile": run.forward is not run.model,
    }
    seconds = totals["train_seconds"]
    return {
        "format_version": METRICS_FORMAT,
        "run": cfg.run,
        "variant": info["variant"],
        "backbone": info["backbone"],
        "protocol": info["protocol"],
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "tag": cfg.tag,
        "params": count_params(run.model),
        "rep_dim": int(run.model.rep_dim),
        "flops_per_image": None,  # counted where shown: gmsop bench, gmsop models
        "hparams": hparams,
        "env": run.runtime.env(cfg.deterministic, compiled=run.forward is not run.model),
        "final": {
            "top1_err": last["val_top1_err"],
            "top5_err": last["val_top5_err"],
            "epochs": last["epoch"],
            "train_time_s": sum(r["epoch_time_s"] for r in records),
            "train_img_s": totals["train_samples"] / seconds if seconds > 0 else None,
            "val_routing": last.get("val_routing"),
            "val_class_counts": last.get("val_class_counts"),
        },
        "epochs": [_epoch_line(r) for r in records],
    }
