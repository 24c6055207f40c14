"""Finding the modules of a plugin package, so that adding a webhook provider or a body decoder
is adding one file: nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def submodules(package: str, path: Iterable[str]) -> list[ModuleType]:
    """Import every public module of ``package`` (``_`` marks the package's own helpers), by
    name: the order is the same on every machine."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_")
    )
    return [importlib.import_module(f"{package}.{name}") for name in names]
