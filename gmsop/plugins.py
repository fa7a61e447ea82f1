"""Load user modules that register their own heads/variants (``plugins:`` in the config), in the
training and benchmark jobs alike: an entry is a dotted module name (importable from the working
directory or the environment) or a path to a ``.py`` file relative to the working directory."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType] = {}


def _load(entry: str) -> ModuleType:
    if entry.endswith(".py") or os.sep in entry:
        path = Path(entry).resolve()
        if not path.is_file():
            raise ValueError(f"plugin file {entry!r} not found (looked at {path})")
        name = f"gmsop_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(entry)
    except ModuleNotFoundError as err:
        raise ValueError(f"plugin module {entry!r} cannot be imported: {err}") from None


def load_plugins(entries) -> list[ModuleType]:
    """Import each entry once (a later call returns the same module)."""
    entries = [str(e) for e in entries or []]
    for entry in entries:
        if entry not in _LOADED:
            _LOADED[entry] = _load(entry)
    return [_LOADED[e] for e in entries]
