"""Small option validators shared by the dataset builders: each raises ValueError naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def require_int(
    dataset: str, name: str, value: Any, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int within bounds (bools and floats with a fraction are refused)."""
    whole_float = isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, int) or whole_float):
        raise ValueError(f"{dataset}: option {name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{dataset}: option {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{dataset}: option {name} must be <= {maximum}, got {value}")
    return value


def require_float(dataset: str, name: str, value: Any, lo: float, hi: float, hi_open: bool = False) -> float:
    """``value`` as a float in [lo, hi] (or [lo, hi) with ``hi_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{dataset}: option {name} must be a number, got {value!r}")
    value = float(value)
    if not (lo <= value <= hi) or (hi_open and value >= hi):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{dataset}: option {name} must be in [{lo}, {hi}{bracket}, got {value}")
    return value


def require_choice(dataset: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{dataset}: option {name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def require_root(dataset: str, root: Path | None, what: str) -> Path:
    """The data folder, which must exist; ``what`` says what it should contain."""
    if root is None:
        raise ValueError(f"{dataset}: needs root= the folder holding {what}")
    root = Path(root)
    if not root.exists():
        raise ValueError(f"{dataset}: root {root} does not exist (expected the folder holding {what})")
    return root
