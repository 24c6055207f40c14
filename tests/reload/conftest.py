"""Fixtures for hot-reload tests: a temp dir for real policy and schema files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def policy_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "schemas").mkdir()
    yield tmp_path
