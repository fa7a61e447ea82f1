"""The training configuration: one typed dataclass that CLI, ``--config`` file and Python API all
build; ``__post_init__`` rejects a bad value, naming the field, before any data is loaded. Defaults
follow the released code (method-facts.md). ``fingerprint()``: the fields that change the numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gmsop.formats import ResultFileError, check_run_block
from gmsop.registry import resolve_variant

#: Released schedules, lr x epochs (method-facts.md), per schedule family; a variant's family
#: is ``resolve_variant(name).schedule_family`` (declared per head in gmsop.heads).
DEFAULT_SCHEDULES: dict[str, list[tuple[float, int]]] = {
    # cnn_init_resnet_GM.m / baseline, and the text ({50,15,10} at 0.075): GAP, GM-GAP, SG-MoE
    "gap": [(0.075, 50), (0.0075, 15), (0.00075, 10)],
    # the SR-SOP script: 0.15 x {40,10,5,5} (the text gives {20,5,5,5,5})
    "srsop": [(0.15, 40), (0.015, 10), (0.0015, 5), (0.00015, 5)],
    # the GM-SOP script, and the text (0.1, {40,10,5,5}): GM-SOP, Ave-SOP
    "gm_sop": [(0.1, 40), (0.01, 10), (0.001, 5), (0.0001, 5)],
}

#: Fields that do not change what a run computes (excluded from the resume fingerprint).
_NOT_FINGERPRINTED = ("out", "ckpt_dir", "data_root", "compile", "progress", "tag", "run")


def _whole(v: Any) -> bool:
    """A finite number (not a bool) with an integer value."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and float(v) == int(v)


def parse_schedule(value: Any) -> list[tuple[float, int]]:
    """``"0.1:40,0.01:10"`` or ``[[0.1, 40], [0.01, 10]]`` -> [(0.1, 40), (0.01, 10)], validated."""
    pairs = []
    if isinstance(value, str):
        for part in filter(None, (p.strip() for p in value.split(","))):
            m = re.fullmatch(r"([^:x]+)\s*[:x]\s*([^:x]+)", part)
            try:
                lr, ep = (float(m[1]), float(m[2])) if m else (0.0, math.nan)
                if not _whole(ep):
                    raise ValueError
            except ValueError:
                raise ValueError(f"schedule entry {part!r} is not LR:EPOCHS (e.g. 0.1:40,0.01:10)") from None
            pairs.append((lr, int(ep)))
    elif isinstance(value, (list, tuple)):
        for entry in value:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise ValueError(f"schedule entry {entry!r} must be a pair [lr, epochs]")
            lr, ep = entry
            if isinstance(lr, bool) or not isinstance(lr, (int, float)):
                raise ValueError(f"schedule entry {list(entry)!r}: lr must be a number, got {lr!r}")
            if not _whole(ep):
                raise ValueError(f"schedule entry {list(entry)!r}: epochs must be an integer, got {ep!r}")
            pairs.append((float(lr), int(ep)))
    else:
        raise ValueError(f"schedule must be 'LR:EPOCHS,...' or a list of [lr, epochs] pairs, got {value!r}")
    if not pairs:
        raise ValueError(f"schedule is empty ({value!r}); give at least one LR:EPOCHS pair")
    for lr, ep in pairs:
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"schedule: learning rate must be a positive finite number, got {lr!r}")
        if ep <= 0:
            raise ValueError(f"schedule: epochs must be >= 1, got {ep!r} (for lr {lr})")
    return pairs


def default_schedule(variant: str) -> list[tuple[float, int]]:
    """The released code's schedule for ``variant``'s schedule family (ValueError if unknown)."""
    return list(DEFAULT_SCHEDULES[resolve_variant(variant).schedule_family])


def parse_key_value(text: str, what: str = "option") -> tuple[str, Any]:
    """``"k=v"`` -> (k, v) with v parsed as JSON when it is JSON (5, 1e-4, true, [256, 64]), else a string."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"{what} {text!r} must be KEY=VALUE")
    if not key.strip():
        raise ValueError(f"{what} {text!r} has an empty key")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


@dataclass
class TrainConfig:
    """One training run. Every field has a default; ``None`` means "derive it" as commented."""

    variant: str = "GM-SOP-16-8"  # a name from gmsop.list_variants() (N, K, X may vary)
    backbone: str | None = None  # None: the backbone the variant names, else resnet18
    dataset: str = "synthetic"  # a name from gmsop.data.list_datasets()
    data_root: str | None = None  # folder of a file-backed dataset (None for generated data)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # get_dataset(**options)
    protocol: str = "official"  # "official" (released code) or "paper" (the text)
    overrides: dict[str, Any] = field(default_factory=dict)  # protocol switches or head options
    dropout: float | None = None  # mixtures only; None: 0.2 (0.4 GM-SOP on WRN-36-2)
    batch_size: int = 256  # released code: 256
    schedule: list[tuple[float, int]] | None = None  # (lr, epochs) steps; None: default_schedule
    lr_scaling: str = "linear"  # lrs x batch / released batch (256; 150 for WRN-36-2), or "none"
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the protocol's (1e-4 official, 5e-4 paper)
    input_norm: str = "mean"  # released code: subtract the channel mean; "mean_std" also divides by std
    seed: int = 0  # model init, augmentation, gate noise, dropout, batch order
    deterministic: bool = False  # bit-reproducible kernels (slower on CUDA: no cuDNN autotune)
    device: str = "auto"  # auto: CUDA if available, else CPU
    compile: bool = False  # torch.compile the model (CUDA only; ignored on CPU)
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (SOP layers stay float32)
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    max_train_batches: int | None = None  # cap on training batches per epoch (smoke tests)
    out: str | None = None  # final metrics.json (written atomically, only at the very end)
    ckpt_dir: str | None = None  # last.pt + progress.jsonl; None: <dir of out>/ckpt, or none
    tag: str | None = None  # free label copied into metrics.json (ablation name, ...)
    run: dict | None = None  # the workflow's identity block (gmsop.formats.run_block), for metrics.json
    progress: str = "auto"  # auto: a tqdm bar on a terminal, one line per epoch otherwise; bar|lines|none

    def __post_init__(self) -> None:
        for name in ("variant", "dataset", "protocol", "backbone", "data_root", "out", "ckpt_dir", "tag"):
            value = getattr(self, name)
            if value is not None or name in ("variant", "dataset", "protocol"):
                setattr(self, name, _require_str(name, str(value) if isinstance(value, Path) else value))
        for name in ("dataset_options", "overrides"):
            value = {} if getattr(self, name) is None else getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")
            setattr(self, name, dict(value))
        if self.run is not None:
            try:
                check_run_block(self.run)
            except ResultFileError as err:
                raise ValueError(f"run must be an identity block (gmsop.formats.run_block): {err}") from None
        for name, lo in (("batch_size", 1), ("seed", 0), ("eval_every", 1), ("max_train_batches", 1)):
            if getattr(self, name) is not None or name != "max_train_batches":
                setattr(self, name, _require_int(name, getattr(self, name), lo))
        if self.schedule is not None:
            self.schedule = parse_schedule(self.schedule)
        for name, hi in (("momentum", 1.0), ("weight_decay", math.inf), ("dropout", 1.0)):
            if getattr(self, name) is not None or name == "momentum":
                setattr(self, name, _require_float(name, getattr(self, name), hi))
        for name in ("deterministic", "compile", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self.device = _require_str("device", self.device).lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:<index>")
        for name, choices in (
            ("lr_scaling", ("linear", "none")),
            ("input_norm", ("mean", "mean_std")),
            ("progress", ("auto", "bar", "lines", "none")),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        wd_over = self.overrides.get("weight_decay")
        if wd_over is not None and self.weight_decay is not None and float(wd_over) != self.weight_decay:
            raise ValueError(
                f"weight decay given twice with different values: weight_decay={self.weight_decay} and "
                f"override weight_decay={wd_over}; give one"
            )

    def resolved_schedule(self) -> list[tuple[float, int]]:
        """The schedule trained: the given one (else the released one) with ``lr_scaling`` applied."""
        factor = self.lr_factor()
        return [(lr * factor, ep) for lr, ep in self.schedule or default_schedule(self.variant)]

    def lr_factor(self) -> float:
        """Under ``linear``, batch / the batch the released schedules used (Goyal et al. 2017), else 1:
        150 for WRN-36-2 (``cnn_init_WRN_GM.m``), 256 for every other backbone."""
        backbone = resolve_variant(self.variant, self.backbone).backbone
        return (
            self.batch_size / (150 if backbone == "wrn36_2" else 256) if self.lr_scaling == "linear" else 1.0
        )

    @property
    def epochs(self) -> int:
        return sum(ep for _, ep in self.resolved_schedule())

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-based ``epoch`` under the step schedule."""
        end = 0
        for lr, ep in self.resolved_schedule():
            end += ep
            if epoch <= end:
                return lr
        raise ValueError(f"epoch {epoch} is past the end of the schedule ({end} epochs)")

    def resolved_ckpt_dir(self) -> Path | None:
        """Where last.pt and progress.jsonl live: ``ckpt_dir``, else ``<dir of out>/ckpt``."""
        if self.ckpt_dir is not None:
            return Path(self.ckpt_dir)
        return Path(self.out).parent / "ckpt" if self.out is not None else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schedule"] = [list(p) for p in self.schedule] if self.schedule is not None else None
        return d

    def fingerprint(self, device_type: str) -> dict[str, Any]:
        """The fields that determine the numbers, with the schedule resolved and the device type."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
        d.update(schedule=[list(p) for p in self.resolved_schedule()], device=device_type)
        return json.loads(json.dumps(d))  # canonical primitives (tuples -> lists)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; keys may use '-' or '_'; an unknown key is an error naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a mapping, got {type(data).__name__}")
        norm = {str(k).replace("-", "_"): v for k, v in data.items()}
        names = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(norm) - set(names)):
            raise ValueError(f"unknown config key(s) {unknown}; valid keys: {', '.join(names)}")
        return cls(**norm)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or YAML mapping from ``path`` (by suffix; YAML also accepts JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read config file {path}: {err.strerror}") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"config file {path} is not valid {'JSON' if is_json else 'YAML'}: {err}") from None
    if not isinstance(data, dict | None):
        raise ValueError(
            f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}"
        )
    return data or {}


def _require_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _require_int(name: str, value: Any, minimum: int) -> int:
    if not _whole(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _require_float(name: str, value: Any, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 <= value < hi:
        raise ValueError(f"{name} must be in [0.0, {hi}), got {float(value)!r}")
    return float(value)
