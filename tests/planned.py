"""Test inputs: planned rows and experiments built directly (no config), to pair with the
result files of ``result_files.py``. A row's ``run``/``bench`` ids are what its files carry."""

from __future__ import annotations

from gmsop.claim_spec import parse_claims
from gmsop.experiments import Experiment, Row

__all__ = ["make_row", "make_experiment"]


def make_row(
    label: str,
    variant: str | None = None,
    *,
    run: str | None = None,
    bench: str | None = None,
    seeds=(0, 1, 2),
    backbone: str = "resnet18",
    dataset: str = "synthetic",
    dataset_name: str = "synthetic",
    width_mult: float = 0.25,
    paper: str | None = "",
    alpha: float | None = None,
    num_experts: int | None = None,
    k: int | None = None,
    experiment: str = "table2",
    index: int = 0,
) -> Row:
    """A planned row; ``paper=""`` means "compare with the paper's row of the same variant"."""
    variant = variant or label
    return Row(
        experiment=experiment,
        index=index,
        label=label,
        run=run or f"run-{label}",
        bench=bench or f"bench-{label}",
        seeds=tuple(seeds),
        variant=variant,
        display=variant,
        backbone=backbone,
        protocol="official",
        dataset=dataset,
        dataset_name=dataset_name,
        width_mult=width_mult,
        settings={"variant": variant},
        paper=variant if paper == "" else paper,
        num_experts=num_experts,
        k=k,
        alpha=alpha,
    )


def make_experiment(
    rows,
    claims=(),
    *,
    name: str = "table2",
    kind: str = "table",
    paper: str | None = "table2",
    baseline: str | None = None,
    title: str = "Table 2 (test)",
    counts_alphas=(),
    family=None,
) -> Experiment:
    rows = tuple(rows)
    return Experiment(
        name=name,
        kind=kind,
        title=title,
        paper=paper,
        baseline=baseline,
        claims=parse_claims(list(claims), [r.label for r in rows]),
        rows=rows,
        counts_alphas=tuple(counts_alphas),
        family=family,
    )
