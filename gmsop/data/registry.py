"""Dataset registry: ``builder(root, **options) -> Dataset`` by name, and what the planner may ask of
a dataset without building it (training size, source files, augmentation). Options are checked
against the builder's keyword parameters; None values are dropped (the default applies).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmsop.data.base import AugmentSpec, Dataset, resolve_augment

Builder = Callable[..., Dataset]
_BUILDERS: dict[str, Builder] = {}
_TRAIN_SIZES: dict[str, Callable[..., int | None]] = {}
_SOURCE_FILES: dict[str, Callable[..., list[Path]]] = {}
_AUGMENT_PRESETS: dict[str, Callable[..., dict[str, AugmentSpec]]] = {}


def register_dataset(name: str, version: int = 1) -> Callable[[Builder], Builder]:
    """Decorator recording ``fn`` as the builder of dataset ``name``. Bump ``version`` when the same
    options start to give other bytes: run ids hash it (``dataset_fingerprint``)."""

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


def _registrar(table: dict[str, Callable[..., Any]]):
    return lambda name: lambda fn: table.update({name: fn}) or fn


#: ``@register_train_size(name)`` records ``fn(root, **options) -> int | None``: the training images
#: when cheap to know without building (an option, an array header), else None; the workflow
#: refuses a batch larger than the training set when it plans
register_train_size = _registrar(_TRAIN_SIZES)
#: ``@register_source_files(name)`` records ``fn(root, **options) -> [files]``: every file the
#: dataset reads (ValueError naming what is missing); such a dataset's identity includes their
#: content (``gmsop.data.content``). Generated datasets register none.
register_source_files = _registrar(_SOURCE_FILES)
#: ``@register_augment_presets(name)`` records ``fn(**options) -> {preset: AugmentSpec}``; the
#: builder resolves ``augment`` through it too (``augment_spec``), and its default names the preset
register_augment_presets = _registrar(_AUGMENT_PRESETS)


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


def _all_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Every option of ``name``: the given ones (checked), defaults for the others."""
    return {**dataset_options(name), **_known_options(name, options or {})}


def dataset_fingerprint(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides a dataset's content: its name, the builder's version and every option, defaults
    filled in (a changed default changes run ids; spelling a default out does not). ``root`` is
    left out: moving the files does not change the data."""
    return {"name": name, "version": _builder(name).data_version, "options": _all_options(name, options)}


def get_dataset(name: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Build dataset ``name`` from ``root`` (None for generated/bundled data) with ``options``;
    ValueError for an unknown name or option, or anything wrong with the data."""
    return _builder(name)(_root(root), **_known_options(name, options))


def train_size(
    name: str, root: str | Path | None = None, options: dict[str, Any] | None = None
) -> int | None:
    """Training images of dataset ``name`` if cheap to know without building it, else None (also
    when the root is missing: the builder reports that); an unreadable file raises ValueError."""
    fn = _TRAIN_SIZES.get(name)
    if fn is None:
        return None
    opts = _all_options(name, options)
    if root is not None and not Path(root).expanduser().exists():
        return None
    return fn(_root(root), **opts)


def source_files(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None
) -> list[Path] | None:
    """The files dataset ``name`` reads (see ``register_source_files``), or None when it reads none."""
    fn = _SOURCE_FILES.get(name)
    return None if fn is None else list(fn(_root(root), **_all_options(name, options)))


def _root(root: str | Path | None) -> Path | None:
    return Path(root).expanduser() if root is not None else None


def augment_spec(name: str, options: dict[str, Any] | None = None) -> AugmentSpec | None:
    """The ``AugmentSpec`` dataset ``name`` trains with under ``options``, resolved as its builder
    does; None when that needs its files (no registered presets and a preset name)."""
    defaults = dataset_options(name)
    given = _known_options(name, options or {})
    value = given.get("augment", defaults.get("augment"))
    presets = _AUGMENT_PRESETS.get(name)
    if presets is not None:
        return resolve_augment(value, presets(**{**defaults, **given}), defaults["augment"], name)
    if isinstance(value, AugmentSpec):
        return value
    if isinstance(value, dict):
        return resolve_augment(value, {"base": AugmentSpec()}, "base", name)
    return None


def flip_doubled(name: str, options: dict[str, Any] | None = None) -> bool:
    """Whether dataset ``name`` trains on its images plus their mirror copies (an epoch of 2N);
    unknown augmentation counts as not doubled."""
    return bool(getattr(augment_spec(name, options), "flip_double", False))
