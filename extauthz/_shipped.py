"""Where the files the commands read live: in the wheel, or in a clone of the repository.

The repository keeps ``policies/`` and ``envoy/`` at its top level (where users and docs
point). A built wheel carries copies as ``extauthz/_shipped/<name>/`` (``setup.py`` copies
them at build time); an editable install or a plain checkout reads the top-level folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_DIRS = ("policies", "envoy")

ShippedName = Literal["policies", "envoy"]


def shipped_dir(name: ShippedName) -> Path:
    """The folder of shipped ``name`` files: the wheel's copy first, else the clone's."""
    for candidate in (PACKAGE_DIR / "_shipped" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    # Not found anywhere: return the wheel path so the caller's error names a real place.
    return PACKAGE_DIR / "_shipped" / name
