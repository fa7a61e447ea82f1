"""Dataset registry: a dict from name to builder, ``get_dataset`` and ``list_datasets``.

A builder is a plain function ``builder(root, **options) -> Dataset`` registered under its name
with ``@register_dataset("name")``. ``get_dataset`` checks the options against the builder's
keyword parameters before calling it, so a misspelt option in a config fails with its name
instead of being swallowed, and options whose value is None are dropped (an unset CLI or config
value leaves the builder's default alone).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmsop.data.base import AugmentSpec, Dataset, resolve_augment

__all__ = [
    "register_dataset",
    "register_train_size",
    "register_source_files",
    "get_dataset",
    "list_datasets",
    "dataset_options",
    "dataset_fingerprint",
    "train_size",
    "source_files",
    "register_augment_presets",
    "augment_presets",
    "augment_spec",
    "flip_doubled",
]

Builder = Callable[..., Dataset]
_BUILDERS: dict[str, Builder] = {}
_TRAIN_SIZES: dict[str, Callable[..., int | None]] = {}
_SOURCE_FILES: dict[str, Callable[..., list[Path]]] = {}
_AUGMENT_PRESETS: dict[str, Callable[..., dict[str, AugmentSpec]]] = {}


def register_dataset(name: str, version: int = 1) -> Callable[[Builder], Builder]:
    """Decorator recording ``fn`` as the builder of dataset ``name``; refuses duplicates.

    ``version`` names the builder's output for given options: bump it when the same options
    start to give other bytes (a changed generator or parser), so that run ids, which hash
    ``dataset_fingerprint``, change with it and old results are not reused for new data.
    """

    def wrap(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is already registered by {_BUILDERS[name].__module__}")
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] != "root":
            raise ValueError(f"dataset builder {fn.__name__} must take 'root' as its first parameter")
        fn.data_version = int(version)
        _BUILDERS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    """Names accepted by ``get_dataset``, sorted."""
    return sorted(_BUILDERS)


def _builder(name: str) -> Builder:
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")
    return _BUILDERS[name]


def dataset_options(name: str) -> dict[str, Any]:
    """The options a dataset accepts with their defaults (``root`` excluded)."""
    sig = inspect.signature(_builder(name))
    return {k: p.default for k, p in sig.parameters.items() if k != "root"}


def _known_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without its None values; ValueError naming any option ``name`` lacks."""
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    return {k: v for k, v in options.items() if v is not None}


def dataset_fingerprint(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides a dataset's content: its name, the builder's version and EVERY option, the
    builder's defaults filled in for those not given (None values count as not given).

    A planned run hashes this (``gmsop.experiments``), so a default changed in code, or a
    ``version`` bump, gives new run ids instead of silently reusing results trained on other
    data; spelling a default out in a config changes nothing. ``root`` is left out: moving the
    files does not change the data.
    """
    given = _known_options(name, options or {})
    return {
        "name": name,
        "version": _builder(name).data_version,
        "options": {**dataset_options(name), **given},
    }


def get_dataset(name: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Build dataset ``name`` from ``root`` (None for generated/bundled data) with ``options``.

    Raises:
        ValueError: unknown name (listing valid ones), an unknown option (naming it and listing
            the valid ones), or anything the builder finds wrong with the data or the options.
    """
    builder = _builder(name)
    options = _known_options(name, options)
    return builder(Path(root).expanduser() if root is not None else None, **options)


def register_train_size(name: str) -> Callable[[Callable[..., int | None]], Callable[..., int | None]]:
    """Decorator recording ``fn(root, **options) -> int | None``: the number of training images of
    dataset ``name`` when it is cheap to know without building the dataset (an option, an array
    header), else None. The workflow uses it to refuse a batch larger than the training set when
    it plans, before any job runs."""

    def wrap(fn):
        _TRAIN_SIZES[name] = fn
        return fn

    return wrap


def train_size(
    name: str, root: str | Path | None = None, options: dict[str, Any] | None = None
) -> int | None:
    """Training images of dataset ``name`` (with ``options``, defaults filled in) if cheap to know
    without building it, else None (no estimator, or the root is missing: the dataset's own
    builder then reports it). A file that cannot be read raises the estimator's ValueError, which
    names the file and the reason (a truncated npz is found when the workflow plans)."""
    fn = _TRAIN_SIZES.get(name)
    if fn is None:
        return None
    opts = {**dataset_options(name), **_known_options(name, options or {})}
    if root is not None and not Path(root).expanduser().exists():
        return None
    return fn(Path(root).expanduser() if root is not None else None, **opts)


def register_source_files(name: str) -> Callable[[Callable[..., list[Path]]], Callable[..., list[Path]]]:
    """Decorator recording ``fn(root, **options) -> [files]``: every file dataset ``name`` reads
    from ``root`` (ValueError naming what is missing, as the builder would). A dataset with such
    a function is file-backed: its identity includes the content of those files
    (``gmsop.data.content``); generated datasets register none."""

    def wrap(fn):
        _SOURCE_FILES[name] = fn
        return fn

    return wrap


def source_files(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None
) -> list[Path] | None:
    """The files dataset ``name`` reads (see ``register_source_files``), or None when it reads none."""
    fn = _SOURCE_FILES.get(name)
    if fn is None:
        return None
    opts = {**dataset_options(name), **_known_options(name, options or {})}
    return list(fn(Path(root).expanduser() if root is not None else None, **opts))


def register_augment_presets(name: str):
    """Decorator recording ``fn(**options) -> {preset name: AugmentSpec}``: the augmentation presets
    of dataset ``name`` as its options decide them (every option passed, defaults filled in). The
    builder resolves its ``augment`` option through the same function (``augment_spec``), so the
    planner knows a run's augmentation without building the dataset. The builder's default for
    ``augment`` names the default preset."""

    def wrap(fn):
        _AUGMENT_PRESETS[name] = fn
        return fn

    return wrap


def augment_presets(name: str, options: dict[str, Any] | None = None) -> dict[str, AugmentSpec] | None:
    """Dataset ``name``'s presets under ``options`` (see ``register_augment_presets``), or None when
    its presets depend on its files (npz: the pad follows the stored height) or it registers none."""
    fn = _AUGMENT_PRESETS.get(name)
    if fn is None:
        return None
    return fn(**{**dataset_options(name), **_known_options(name, options or {})})


def augment_spec(name: str, options: dict[str, Any] | None = None) -> AugmentSpec | None:
    """The ``AugmentSpec`` dataset ``name`` trains with under ``options``, resolved through its
    presets as its builder resolves it; None when that is not known without its files (no
    registered presets and the ``augment`` option is a preset name). ValueError names an unknown
    preset or field."""
    defaults = dataset_options(name)
    given = _known_options(name, options or {})
    value = given.get("augment", defaults.get("augment"))
    presets = augment_presets(name, given)
    if presets is not None:
        return resolve_augment(value, presets, defaults["augment"], name)
    if isinstance(value, AugmentSpec):
        return value
    if isinstance(value, dict):
        return resolve_augment(value, {"base": AugmentSpec()}, "base", name)
    return None


def flip_doubled(name: str, options: dict[str, Any] | None = None) -> bool:
    """Whether dataset ``name`` under ``options`` trains on its images plus their mirror copies
    (``AugmentSpec.flip_double``: an epoch of 2N samples). The one answer the trainer's batch
    check, the planner's cost and batch checks and ``gmsop plan`` use; an augmentation not known
    without the files (see ``augment_spec``) counts as not doubled, as none of those presets doubles."""
    spec = augment_spec(name, options)
    return bool(spec is not None and spec.flip_double)
