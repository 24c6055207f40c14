"""``extauthz evaluate --policy FILE --context CTX.json``: print the Decision JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import _report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate one RequestContext against a policy and print the Decision"
    )
    parser.add_argument("--policy", required=True, help="policy file (YAML or JSON)")
    parser.add_argument(
        "--context", required=True, help="RequestContext JSON file ('-' reads stdin)"
    )
    parser.add_argument(
        "--now", type=float, default=None, help="epoch seconds for webhook timestamps"
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON output")
    parser.add_argument(
        "--explain",
        action="store_true",
        help='also explain it: {"decision": ..., "explain": {phases, hits with policy '
        "locations, CEL inputs}}",
    )
    _report.add_policy_base_dir(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._exceptions import InvalidContext
    from ..context import RequestContext
    from ..engine import evaluate
    from ._report import fail

    policy = _report.policy_of(args)
    if policy is None:
        return 1
    try:
        if args.context == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(args.context, "rb") as fh:
                text = fh.read()
        ctx = RequestContext.from_json(text)
    except OSError as exc:
        return fail(f"{args.context}: cannot read: {exc.strerror or exc}")
    except InvalidContext as exc:
        return fail(f"{args.context}: invalid context: {exc}")
    if args.explain:
        from ..engine.explain import explain
        from ..engine.record import Record, recording

        record = Record()  # what the pipeline saw: explain reads it
        decision = evaluate(policy, ctx, now=args.now, phases=recording(record))
        explained = explain(policy, ctx, decision, record).to_dict()
        out: dict[str, Any] = {"decision": decision.to_dict(), "explain": explained}
    else:
        out = evaluate(policy, ctx, now=args.now).to_dict()
    if args.compact:
        print(json.dumps(out, separators=(",", ":"), ensure_ascii=False, default=str))
    else:
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    return 0
