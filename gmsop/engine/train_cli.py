"""``gmsop train``: options (and an optional ``--config`` file) -> a TrainConfig -> train.
Rerunning the same command resumes; the exit statuses are in the ``--help`` epilog."""

from __future__ import annotations

import argparse
import sys
import textwrap
from argparse import BooleanOptionalAction
from typing import Any

from gmsop.engine.config import TrainConfig, load_config_file, parse_key_value
from gmsop.engine.loop import NonFiniteLossError
from gmsop.engine.trainer import UnwritableOutputError, train

#: exit status when the output or checkpoint folder cannot be written (checked before training)
EXIT_UNWRITABLE = 3


def _kv(what: str):
    def parse(text: str) -> tuple[str, Any]:
        try:
            return parse_key_value(text, what)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def get_args_parser() -> argparse.ArgumentParser:
    """Every option defaults to "not given", so a --config file's value is kept unless overridden."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="gmsop train",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train one GM-SOP variant on one dataset with SGD + momentum and a step learning-rate schedule; "
            "loss = mean cross-entropy + the gate's balance loss. Checkpoints every epoch (atomically) and "
            "resumes automatically when rerun with the same settings; writes metrics.json only at the end.",
            88,
        ),
        epilog="files written:\n"
        "  <out>                       metrics.json (final; atomic; only when training completes)\n"
        "  <ckpt-dir>/last.pt          resume checkpoint after every epoch "
        "(model, optimiser, RNG states, records)\n"
        "  <ckpt-dir>/progress.jsonl   one JSON line per completed epoch\n"
        "  <ckpt-dir>/config.json      the resolved configuration\n"
        "exit status: 0 done, 1 non-finite loss (last good checkpoint kept), 2 bad configuration,\n"
        "  3 cannot write --out's folder or --ckpt-dir (checked before training starts), 130 interrupted",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="JSON or YAML file with any of the keys below (underscored: batch_size, "
        "dataset_options, ...); command-line options override it",
    )
    add = p.add_argument_group("model").add_argument
    add(
        "--variant",
        help="variant name: ResNet-18, ResNet-18-512d, SR-SOP, GM-GAP-16-8, GM-SOP-16-8, ... "
        f"(default: {d.variant})",
    )
    add("--backbone", help="resnet18, resnet50 or wrn36_2 (default: the variant's, else resnet18)")
    add("--protocol", help=f"'official' (released code) or 'paper' (its text) (default: {d.protocol})")
    add(
        "--override",
        action="append",
        type=_kv("--override"),
        metavar="KEY=VALUE",
        help="protocol switch (ns_iterations, weight_decay, alpha, sop_stage5_stride, ...) or head option "
        "(num_experts, k, width, dims, ...) or width_mult (CPU-sized nets: backbone and head widths "
        "scaled); VALUE is parsed as JSON when possible; repeatable",
    )
    add("--dropout", type=float, help="dropout before a mixture's classifier (default: 0.2; WRN GM-SOP 0.4)")
    add = p.add_argument_group("data").add_argument
    add("--dataset", help=f"dataset name, e.g. synthetic, imagenet64, places365 (default: {d.dataset})")
    add("--data-root", help="folder holding a file-backed dataset (not needed for synthetic)")
    add(
        "--dataset-option",
        action="append",
        type=_kv("--dataset-option"),
        metavar="KEY=VALUE",
        help="dataset builder option, e.g. classes=10, n_train=500, size=32; VALUE parsed as JSON when "
        "possible; repeatable",
    )
    add(
        "--input-norm",
        choices=["mean", "mean_std"],
        help="input normalisation: subtract the per-channel training mean (released code) or also divide "
        "by the std (default: mean)",
    )
    add = p.add_argument_group("optimisation").add_argument
    add("--batch-size", type=int, help=f"images per SGD step (default: {d.batch_size})")
    add(
        "--schedule",
        metavar="LR:EPOCHS,...",
        help="step schedule, e.g. 0.1:40,0.01:10,0.001:5,0.0001:5 (default: the released code's for the "
        "variant's family: GAP/GM-GAP 0.075:50,0.0075:15,0.00075:10; SR-SOP 0.15:40,0.015:10,0.0015:5,"
        "0.00015:5; GM-SOP 0.1:40,0.01:10,0.001:5,0.0001:5)",
    )
    add(
        "--lr-scaling",
        choices=["linear", "none"],
        help="linear: every lr of the schedule x batch / the batch it was published with (256; 150 for "
        "WRN-36-2), the released step size per image; none: the schedule's rates as given "
        f"(default: {d.lr_scaling})",
    )
    add("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    add("--weight-decay", type=float, help="SGD weight decay (default: the protocol's, 1e-4 or 5e-4)")
    add("--seed", type=int, help=f"seed of init, augmentation, noise, dropout, order (default: {d.seed})")
    add(
        "--deterministic",
        action=BooleanOptionalAction,
        help="deterministic kernels: the same seed gives bit-identical results (slower on CUDA) "
        "(default: off)",
    )
    add = p.add_argument_group("execution").add_argument
    add("--device", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    add("--compile", action=BooleanOptionalAction, help="torch.compile the model on CUDA (default: off)")
    add(
        "--amp",
        action=BooleanOptionalAction,
        help="bf16 autocast of the forward on CUDA and on a CPU with native bf16, "
        "AVX512-BF16 or AMX (default: on; the second-order pooling stays float32)",
    )
    add("--eval-every", type=int, help="evaluate every N epochs and after the last (default: 1)")
    add("--max-train-batches", type=int, help="stop each epoch after this many batches (default: all)")
    add(
        "--progress",
        choices=["auto", "bar", "lines", "none"],
        help="stderr progress: a tqdm bar (auto on a terminal) or one line per epoch (default: auto)",
    )
    add = p.add_argument_group("output").add_argument
    add("--out", metavar="metrics.json", help="final metrics file, written at the very end (default: none)")
    add("--ckpt-dir", help="checkpoints; a rerun resumes from them (default: <dir of --out>/ckpt)")
    add("--tag", help="free label stored in metrics.json (e.g. an ablation name)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """File values first, then explicit flags; key=value lists merge into the file's mappings."""
    given = vars(args).copy()
    data: dict[str, Any] = {}
    if "config" in given:
        data = {str(k).replace("-", "_"): v for k, v in load_config_file(given.pop("config")).items()}
    for flag, key in (("override", "overrides"), ("dataset_option", "dataset_options")):
        if flag in given:
            base = data.get(key) or {}
            if not isinstance(base, dict):
                raise ValueError(f"{key} in the config file must be a mapping, got {base!r}")
            data[key] = {**base, **dict(given.pop(flag))}
    data.update(given)
    return TrainConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        train(config_from_args(args))
    except (NonFiniteLossError, UnwritableOutputError, ValueError) as err:
        print(f"gmsop train: error: {err}", file=sys.stderr)
        return {NonFiniteLossError: 1, UnwritableOutputError: EXIT_UNWRITABLE}.get(type(err), 2)
    except KeyboardInterrupt:
        print(
            "gmsop train: interrupted; rerun the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130
    return 0
