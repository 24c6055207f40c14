"""``extauthz policy check FILE``: validate a policy the way the server would load it."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="policy tools (check)")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a policy; exit 0 when valid, 1 with every problem on stderr",
    )
    check.add_argument("file", help="policy file (YAML or JSON)")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._exceptions import InvalidPolicy
    from ..policy import load_policy

    try:
        policy = load_policy(args.file)
    except InvalidPolicy as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        noun = "problem" if len(exc.errors) == 1 else "problems"
        print(f"{args.file}: policy refused ({len(exc.errors)} {noun})", file=sys.stderr)
        return 1
    print(
        f"{args.file}: OK ({policy.version}, {len(policy.route_ids)} routes, "
        f"{len(policy.files) - 1} schema files)"
    )
    return 0
