"""Load user modules that register their own heads/variants (``plugins:`` in the config).

An entry is a dotted module name (importable from the current directory or the environment)
or a path to a ``.py`` file, relative to the working directory. Importing it runs its
``gmsop.register_head`` / ``register_variant`` calls; the training and benchmark jobs load the
same list, so a registered variant works in every rule.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType] = {}


def load_plugins(entries) -> list[ModuleType]:
    """Import each entry once (a later call returns the same module)."""
    modules = []
    for entry in entries or []:
        entry = str(entry)
        if entry in _LOADED:
            modules.append(_LOADED[entry])
            continue
        if entry.endswith(".py") or os.sep in entry:
            path = Path(entry).resolve()
            if not path.is_file():
                raise ValueError(f"plugin file {entry!r} not found (looked at {path})")
            name = f"gmsop_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(entry)
            except ModuleNotFoundError as err:
                raise ValueError(f"plugin module {entry!r} cannot be imported: {err}") from None
        _LOADED[entry] = module
        modules.append(module)
    return modules
