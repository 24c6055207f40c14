"""What every sub-command does on a refusal: say why on stderr, then exit with a code."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..policy import CompiledPolicy


def fail(message: object, code: int = 1) -> int:
    """Print ``message`` to stderr and return ``code`` (``return fail(...)`` in ``run``)."""
    print(message, file=sys.stderr)
    return code


def load_policy_or_report(path: str | os.PathLike[str]) -> CompiledPolicy | None:
    """The compiled policy, or None after printing each of its problems to stderr."""
    from .._exceptions import InvalidPolicy
    from ..policy import load_policy

    try:
        return load_policy(path)
    except InvalidPolicy as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        return None
