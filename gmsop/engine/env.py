"""Where a run executes and how reproducible it is: device, determinism, seeds, RNG states, env.
RNG capture and restore (torch CPU and CUDA, numpy's and Python's global generators) sit side by
side; states are tensors and plain containers, so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
from typing import Any

import numpy as np
import torch

from gmsop import __version__

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> the first CUDA device if there is one, else the CPU; an absent device is a ValueError."""
    spec = "auto" if spec is None else str(spec).strip().lower()
    if not _DEVICE_RE.match(spec):
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:<index>")
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def device_name(device: torch.device) -> str:
    """The GPU's product name, or the CPU model with the number of threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine() or "cpu"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        model = next(
            (line.split(":", 1)[1].strip() for line in fh if line.lower().startswith("model name")), model
        )
    return f"{model} ({torch.get_num_threads()} threads)"


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Reproducible kernels (strict on the CPU; on CUDA a missing deterministic kernel only warns)
    or fast ones (cuDNN autotuning). ``CUBLAS_WORKSPACE_CONFIG`` must precede cuBLAS's start."""
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=device.type != "cpu")
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and all CUDA devices), numpy's and Python's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """Every random stream as tensors / primitives (``weights_only``-loadable)."""
    keys, pos, has_gauss, cached = np.random.get_state(legacy=True)[1:]
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "generators": {},  # named torch.Generator states: none carry state across epochs
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    # a CPU run saved none (its fingerprint, checked first, holds the device type)
    for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(cuda_state, index)
    n, py = state["numpy"], state["python"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels: a timing without this measures the launch rate, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_info(device: torch.device, deterministic: bool, **extra: Any) -> dict[str, Any]:
    """What a result depends on besides its config: versions, device, determinism flags."""
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__.split("+")[0],
        "torch_build": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": device.type,
        "device_name": device_name(device),
        "gmsop": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "deterministic": bool(deterministic),
        "threads": torch.get_num_threads(),
        **extra,
    }
