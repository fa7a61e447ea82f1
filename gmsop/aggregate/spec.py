"""Table specs (which rows a table shows, from config) and the run filters they imply.

A table spec is plain data so it can live in ``config.yaml``::

    table3:
      title: "Table 3: comparison with the state of the art, downsampled ImageNet-1K"
      paper_table: table3            # default: the table id when it is a paper table
      where: {dataset: imagenet64, protocol: official}   # filters every row's runs
      bench_where: {input_size: 3x64x64}                  # filters benchmark files
      fps_source: auto                # bench | train | auto (bench when any bench file matches)
      baseline: [ResNet-18-512d, resnet18]               # relative-FPS reference row
      orderings: ["GM-GAP-16-8 < ResNet-18-512d"]       # claims checked on the runs (orderings.py)
      rows:
        - [ResNet-18-512d, resnet18]                     # (variant, backbone)
        - [GM-GAP-16-8, resnet18, star]                  # (variant, backbone, tag)
        - {variant: GAP-512d, backbone: resnet50, paper_variant: ResNet-50-512d, label: ResNet-50-512d}

Row matching. A row selects the runs whose ``variant``, ``backbone`` and ``tag`` equal its own
(``tag`` defaults to ""), narrowed by the table's ``where`` and then the row's ``where``. Keys of
``where`` are runs-frame columns (``dataset``, ``protocol``, ``hp.alpha``, ``hp.batch_size``...);
a list value means "any of"; ``null`` removes a constraint (``where: {tag: null}`` ignores tags).
Hyper-parameters holding lists are stored as JSON text, so filter them with that text.

Paper lookup. A row is compared with ``paper_values`` under ``(paper_table, paper_variant or
variant, backbone, paper_tag or tag)``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gmsop.aggregate.orderings import parse_orderings
from gmsop.aggregate.paper_values import STAR, TABLES

__all__ = ["RowSpec", "TableSpec", "parse_table_specs", "apply_where", "parse_rows", "single_value",
           "check_unique_seeds", "FPS_SOURCES"]

#: Where the FPS column comes from: the controlled benchmark (bench.json), the training runs'
#: measured throughput (metrics.json final.train_img_s), or bench when any bench file matches.
FPS_SOURCES = ("bench", "train", "auto")

_ROW_KEYS = {"variant", "backbone", "tag", "label", "paper_variant", "paper_tag", "where", "bench_where"}
_TABLE_KEYS = {"rows", "title", "caption", "paper_table", "baseline", "where", "bench_where", "fps_source",
               "orderings"}


def _freeze(where: Mapping[str, Any] | None, what: str) -> tuple[tuple[str, Any], ...]:
    if where is None:
        return ()
    if not isinstance(where, Mapping):
        raise ValueError(f"{what}: 'where' must be a mapping of column -> value, got {where!r}")
    return tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in where.items())


@dataclass(frozen=True)
class RowSpec:
    """One table row: which runs feed it, how it is labelled, which paper row it is compared with."""

    variant: str
    backbone: str
    tag: str = ""
    label: str | None = None
    paper_variant: str | None = None
    paper_tag: str | None = None
    where: tuple[tuple[str, Any], ...] = ()
    bench_where: tuple[tuple[str, Any], ...] = ()  # extra filters on this row's benchmark files

    @classmethod
    def parse(cls, obj: Any) -> "RowSpec":
        """Accept a RowSpec, a ``(variant, backbone[, tag])`` sequence, or a mapping with the fields."""
        if isinstance(obj, RowSpec):
            return obj
        if isinstance(obj, Mapping):
            unknown = set(obj) - _ROW_KEYS
            if unknown:
                raise ValueError(f"table row {dict(obj)!r}: unknown key(s) {sorted(unknown)}; "
                                 f"allowed: {sorted(_ROW_KEYS)}")
            if "variant" not in obj or "backbone" not in obj:
                raise ValueError(f"table row {dict(obj)!r}: needs 'variant' and 'backbone'")
            fields_ = {k: v for k, v in obj.items() if k not in ("where", "bench_where")}
            fields_["tag"] = fields_.get("tag") or ""
            row = cls(**fields_, where=_freeze(obj.get("where"), f"table row {dict(obj)!r}"),
                      bench_where=_freeze(obj.get("bench_where"), f"table row {dict(obj)!r}"))
        elif isinstance(obj, (list, tuple)) and len(obj) in (2, 3):
            row = cls(obj[0], obj[1], (obj[2] if len(obj) == 3 else "") or "")
        else:
            raise ValueError(f"table row {obj!r}: expected [variant, backbone], [variant, backbone, tag] "
                             "or a mapping with 'variant' and 'backbone'")
        for name in ("variant", "backbone", "tag"):
            if not isinstance(getattr(row, name), str):
                raise ValueError(f"table row {obj!r}: {name} must be a string, got {getattr(row, name)!r}")
        return row

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.variant, self.backbone, self.tag)

    def run_filter(self, table_where: Iterable[tuple[str, Any]] = ()) -> dict[str, Any]:
        """Column -> wanted value for this row's runs (None entries mean "no constraint")."""
        flt: dict[str, Any] = {"variant": self.variant, "backbone": self.backbone, "tag": self.tag}
        flt.update(dict(table_where))
        flt.update(dict(self.where))
        return flt

    @property
    def method(self) -> str:
        """The row's name in the table: its label, else the variant ("*" for a starred row)."""
        return self.label or self.variant + ("*" if self.tag == STAR else "")

    def paper_key(self) -> tuple[str, str, str]:
        """(variant, backbone, tag) under which ``paper_values`` files this row."""
        tag = self.tag if self.paper_tag is None else self.paper_tag
        return (self.paper_variant or self.variant, self.backbone, tag)


def parse_rows(rows: Iterable[Any]) -> tuple[RowSpec, ...]:
    """Parse a list of row specs; refuses an empty table and duplicated rows."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ValueError(f"table rows must be a list, got {rows!r}")
    parsed = tuple(RowSpec.parse(r) for r in rows)
    if not parsed:
        raise ValueError("a table needs at least one row")
    seen: set = set()
    for r in parsed:
        ident = (r.key, r.where, r.label)
        if ident in seen:
            raise ValueError(f"table row {r.key} appears twice")
        seen.add(ident)
    return parsed


@dataclass(frozen=True)
class TableSpec:
    """Everything :func:`gmsop.aggregate.tables.build_table` needs besides the data."""

    table_id: str
    rows: tuple[RowSpec, ...]
    title: str = ""
    caption: str = ""
    paper_table: str | None = None
    baseline: Any = None
    where: tuple[tuple[str, Any], ...] = ()
    bench_where: tuple[tuple[str, Any], ...] = ()
    fps_source: str = "auto"
    orderings: tuple[str, ...] = ()  # "A < B" claims on row labels (gmsop.aggregate.orderings)

    @classmethod
    def from_config(cls, table_id: str, cfg: Mapping[str, Any]) -> "TableSpec":
        """Build a spec from one ``tables.<id>`` config entry, refusing unknown keys by name."""
        if not isinstance(cfg, Mapping):
            raise ValueError(f"table {table_id!r}: config must be a mapping, got {cfg!r}")
        unknown = set(cfg) - _TABLE_KEYS
        if unknown:
            raise ValueError(f"table {table_id!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TABLE_KEYS)}")
        if "rows" not in cfg:
            raise ValueError(f"table {table_id!r}: missing 'rows'")
        fps_source = cfg.get("fps_source", "auto")
        if fps_source not in FPS_SOURCES:
            raise ValueError(f"table {table_id!r}: fps_source {fps_source!r} is not one of {FPS_SOURCES}")
        paper_table = cfg.get("paper_table", table_id if table_id in TABLES else None)
        if paper_table is not None and paper_table not in TABLES:
            raise ValueError(f"table {table_id!r}: paper_table {paper_table!r} is not one of {TABLES}")
        rows = parse_rows(cfg["rows"])
        labels = [r.method for r in rows]
        orderings = tuple(str(o) for o in parse_orderings(cfg.get("orderings"), labels, f"table {table_id!r}: orderings"))
        return cls(
            table_id=table_id, rows=rows, orderings=orderings, title=cfg.get("title", ""),
            caption=cfg.get("caption", ""), paper_table=paper_table, baseline=cfg.get("baseline"),
            where=_freeze(cfg.get("where"), f"table {table_id!r}"),
            bench_where=_freeze(cfg.get("bench_where"), f"table {table_id!r}"), fps_source=fps_source,
        )


def parse_table_specs(tables_cfg: Mapping[str, Any]) -> dict[str, TableSpec]:
    """Every entry of a ``tables:`` config section, parsed (errors name the table)."""
    if not isinstance(tables_cfg, Mapping):
        raise ValueError(f"'tables' must be a mapping of table id -> spec, got {tables_cfg!r}")
    return {str(tid): TableSpec.from_config(str(tid), cfg) for tid, cfg in tables_cfg.items()}


def apply_where(df: pd.DataFrame, where: Mapping[str, Any] | Iterable[tuple[str, Any]], what: str = "runs") -> pd.DataFrame:
    """Rows of ``df`` matching every ``column: value`` in ``where`` (lists: any of; None: skip).

    An unknown column raises ``ValueError`` listing the columns there are, unless ``df`` has no
    rows at all (then there is nothing to filter and hyper-parameter columns cannot exist yet).
    """
    where = dict(where)
    if df.empty:
        return df
    mask = pd.Series(True, index=df.index)
    for col, want in where.items():
        if want is None:
            continue
        if col not in df.columns:
            raise ValueError(f"cannot filter {what} on {col!r}: no such column; columns are "
                             f"{', '.join(map(str, df.columns))}")
        series = df[col]
        if isinstance(want, (list, tuple, set, frozenset)):
            hit = series.isin(list(want))
        else:
            hit = series == want
        mask &= hit.fillna(False).astype(bool)  # a missing value (NA) never matches
    return df[mask]


def single_value(values: pd.Series, what: str, context: str, hint: str) -> Any:
    """The one distinct non-null value of ``values`` (None if there is none).

    Several distinct values raise ``ValueError`` naming them: averaging runs that differ in
    dataset, protocol or architecture would give a number that describes nothing.
    """
    distinct = sorted(set(values.dropna().tolist()), key=str)
    if len(distinct) > 1:
        raise ValueError(f"{context}: runs mix {what} {distinct}; {hint}")
    return distinct[0] if distinct else None


def check_unique_seeds(runs: pd.DataFrame, by: Iterable[str], context: str, hint: str) -> None:
    """Refuse two finished runs with the same seed in one group of ``by``.

    Two runs with one seed in one cell mean the selection is too loose (another alpha, another
    batch size, a rerun in a second folder); averaging them would count one seed twice.
    """
    by = list(by)
    if runs.empty:
        return
    dup = runs.duplicated(by + ["seed"], keep=False)
    if dup.any():
        first = runs[dup].iloc[0]
        same = runs[dup & (runs[by + ["seed"]] == first[by + ["seed"]]).all(axis=1)]
        plain = lambda v: v.item() if hasattr(v, "item") else v  # noqa: E731 - numpy scalar -> Python
        group = ", ".join(f"{c}={plain(first[c])!r}" for c in by) or "the selection"
        seed = plain(first["seed"])
        raise ValueError(f"{context}: seed {seed} appears {len(same)} times in {group} "
                         f"({same['path'].tolist()}); {hint}")
