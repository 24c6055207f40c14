"""``extauthz policy check FILE``: validate a policy the way the server would load it.

``extauthz policy demo-path`` prints where the shipped demo policy is.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="policy tools (check, demo-path)")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a policy; exit 0 when valid, 1 with every problem on stderr",
    )
    check.add_argument("file", help="policy file (YAML or JSON)")
    check.set_defaults(func=run)
    demo_path = sub.add_parser(
        "demo-path",
        help="print the path of the shipped demo policy (in the wheel or the clone)",
    )
    demo_path.set_defaults(func=run_demo_path)


def run_demo_path(args: argparse.Namespace) -> int:
    from .._shipped import shipped_dir

    path = shipped_dir("policies") / "demo.yaml"
    if not path.is_file():
        print(f"extauthz policy demo-path: {path} is missing", file=sys.stderr)
        return 1
    print(path)
    return 0


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
