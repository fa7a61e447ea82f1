"""A claim of the paper as a table spec states it: ``"A < B"``, row A has lower top-1 error than B.

Only what a claim is and how config text becomes one; testing claims on runs is
:mod:`gmsop.aggregate.claims`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SPLIT = re.compile(r"\s+<\s+")


@dataclass(frozen=True)
class Claim:
    """``better`` (a row label) has lower top-1 error than ``worse``."""

    better: str
    worse: str

    def __str__(self) -> str:
        return f"{self.better} < {self.worse}"


def parse_claim(text: str, labels: Sequence[str] | None = None, where: str = "orderings") -> Claim:
    """Parse ``"A < B"`` (spaces around ``<`` required: labels may contain other symbols); with
    ``labels``, both sides must be among them."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not a string like 'SR-SOP < ResNet-18'")
    parts = _SPLIT.split(text.strip())
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"{where}: {text!r} is not of the form 'A < B' (row labels, lower error on the left)"
        )
    claim = Claim(parts[0].strip(), parts[1].strip())
    if claim.better == claim.worse:
        raise ValueError(f"{where}: {text!r} compares a row with itself")
    if labels is not None:
        unknown = [s for s in (claim.better, claim.worse) if s not in labels]
        if unknown:
            raise ValueError(
                f"{where}: {text!r} names {unknown}, not a row of the table; rows are {list(labels)}"
            )
    return claim


def parse_claims(
    items: Iterable[str] | None, labels: Sequence[str] | None = None, where: str = "orderings"
) -> tuple[Claim, ...]:
    """Parse a list of ``"A < B"`` strings (:func:`parse_claim`); errors name ``where[i]``."""
    if items is None:
        return ()
    if isinstance(items, str):
        raise ValueError(f"{where}: expected a list of 'A < B' strings, got the string {items!r}")
    return tuple(parse_claim(t, labels, f"{where}[{i}]") for i, t in enumerate(items))
