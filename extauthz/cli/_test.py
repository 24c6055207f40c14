"""``extauthz test --policy FILE DIR``: run policy test cases, like ``opa test``.

A case file (YAML or JSON) holds one case, or several under ``cases:``::

    name: clean activation          # optional; defaults to the file name
    context: {request: {...}, identity: {...}}   # a RequestContext in its JSON form
    now: 1767225600                 # optional epoch seconds (default: the runner's clock)
    sign: {provider: stripe, secret: whsec_..., timestamp: now-600}   # optional
    repeat: 2                       # optional: evaluate N times, one replay store
    expect: {action: BLOCK, status: 403, ruleIds: [auth.required]}

``sign`` makes the runner add the provider's signature headers over ``body.raw`` at run time
(``timestamp``: ``now``, ``now-N``, ``now+N`` or epoch seconds), so webhook cases never go
stale. ``ruleIds`` is compared as a set, exactly. Prints each failure and ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import _report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("test", help="run policy test cases from a directory")
    parser.add_argument("--policy", required=True, help="policy file (YAML or JSON)")
    parser.add_argument("dir", help="directory of case files (*.yaml, *.yml, *.json)")
    parser.add_argument("--now", type=float, default=None, help="fixed clock (epoch seconds)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print passing cases too")
    _report.add_policy_base_dir(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..policy._cases import load_cases, run_case
    from ._report import fail

    policy = _report.policy_of(args)
    if policy is None:
        return 1
    root = Path(args.dir)
    if not root.is_dir():
        return fail(f"{root}: not a directory")
    now = time.time() if args.now is None else args.now
    passed = failed = 0
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    for path in files:
        cases, error = load_cases(path)
        if error is not None:
            failed += 1
            print(f"FAIL {path}: {error}")
            continue
        for case in cases:
            problems = run_case(policy, case, now)
            label = f"{path}::{case.name}"
            if problems:
                failed += 1
                print(f"FAIL {label}")
                for problem in problems:
                    print(f"    {problem}")
            else:
                passed += 1
                if args.verbose:
                    print(f"PASS {label}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0
