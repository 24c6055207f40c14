"""What every sub-command does on a refusal: say why on stderr, then exit with a code."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..policy import CompiledPolicy


def fail(message: object, code: int = 1) -> int:
    """Print ``message`` to stderr and return ``code`` (``return fail(...)`` in ``run``)."""
    print(message, file=sys.stderr)
    return code


BASE_DIR_ENV = "POLICY_BASE_DIR"


def add_policy_base_dir(parser: argparse.ArgumentParser) -> None:
    """``--policy-base-dir`` for a command that loads a policy (``serve`` has it in its config)."""
    parser.add_argument(
        "--policy-base-dir",
        help="resolve the policy's schema and OpenAPI references against this directory "
        f"instead of the policy file's (upstream's layout: the repository root) [{BASE_DIR_ENV}]",
    )


def policy_base_dir(args: argparse.Namespace) -> str | None:
    """The flag, else the environment variable, else None (the policy file's directory)."""
    return getattr(args, "policy_base_dir", None) or os.environ.get(BASE_DIR_ENV) or None


def policy_of(args: argparse.Namespace) -> CompiledPolicy | None:
    """``--policy`` compiled under ``--policy-base-dir``, or None after its problems are
    printed (``load_policy_or_report``)."""
    return load_policy_or_report(args.policy, policy_base_dir(args))


def load_policy_or_report(
    path: str | os.PathLike[str], base_dir: str | None = None
) -> CompiledPolicy | None:
    """The compiled policy, or None after printing each of its problems to stderr."""
    from .._exceptions import InvalidPolicy
    from ..policy import load_policy

    try:
        return load_policy(path, base_dir=base_dir)
    except InvalidPolicy as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        return None
