"""``extauthz`` command line: one module per sub-command, each with ``register(subparsers)``.

A sub-command module sets ``func`` on its parser; ``func(args) -> int`` is the exit code.
Heavy imports live inside ``func`` so that ``extauthz --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

# Order is the order shown in --help.
_COMMANDS = (
    "_serve", "_policy", "_evaluate", "_explain", "_test", "_envoy_config", "_demo", "_token",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extauthz",
        description="ContractShield for Envoy: an ext_authz policy decision point.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``extauthz evaluate ... | head``): stop quietly, as Unix tools
        # do, instead of a traceback; stdout goes to /dev/null so that the interpreter's own
        # flush at exit does not fail again.
        with contextlib.suppress(OSError, ValueError):  # a stdout without a descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
