"""``extauthz explain``: why a decision came out as it did.

    extauthz explain --policy FILE --context CTX.json         one context, evaluated now
    extauthz explain --policy FILE --log LOG DECISION_ID      a decision from the decision log

From the log, the request is rebuilt from what the record holds (method, path, the logged
headers, subject, tenant, client ip, and the body only where the route opted in) and evaluated
again; what the log lacks is listed, and a re-evaluation that differs from the logged decision
says so. Rotated files next to ``LOG`` (``LOG.1``, ``LOG.2``, ...) are searched too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain a decision: phases, hits with their policy locations, CEL inputs",
    )
    parser.add_argument("decision_id", nargs="?", help="a decisionId from the decision log")
    parser.add_argument("--policy", required=True, help="policy file (YAML or JSON)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", help="RequestContext JSON file ('-' reads stdin)")
    source.add_argument(
        "--log", action="append", help="decision-log file (repeatable; '-' reads stdin)"
    )
    parser.add_argument("--now", type=float, default=None, help="epoch seconds for webhooks")
    parser.add_argument("--json", action="store_true", help="JSON instead of text")
    _report.add_policy_base_dir(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._exceptions import InvalidContext
    from ..context import RequestContext
    from ..engine import evaluate
    from ..engine.explain import explain
    from ..engine.record import Record, recording
    from ._report import fail

    notes: list[str] = []
    logged: dict[str, Any] | None = None
    try:
        if args.context is not None:
            if args.decision_id:
                return fail("give a decision id with --log, or a context with --context", 2)
            text = (
                sys.stdin.buffer.read() if args.context == "-" else Path(args.context).read_bytes()
            )
            ctx = RequestContext.from_json(text)
        else:
            if not args.decision_id:
                return fail("--log needs a DECISION_ID to look for", 2)
            logged = find_record(args.log, args.decision_id)
            if logged is None:
                return fail(f"decision {args.decision_id} is not in {', '.join(args.log)}")
            ctx, notes = context_from_record(logged)
    except OSError as exc:
        return fail(f"{exc.filename or args.context}: cannot read: {exc.strerror or exc}")
    except InvalidContext as exc:
        return fail(f"{args.context or args.decision_id}: invalid context: {exc}")
    policy = _report.policy_of(args)
    if policy is None:
        return 1
    record = Record()  # what the pipeline saw: explain reads it
    decision = evaluate(policy, ctx, now=args.now, phases=recording(record))
    if logged is not None:
        again = (decision.action, [h.id for h in decision.rule_hits])
        before = (logged.get("action"), [h.get("id") for h in logged.get("ruleHits") or ()])
        if again != (before[0], before[1]):
            notes.append(
                f"the log says {before[0]} {before[1]}; evaluated again from the record: "
                f"{again[0]} {again[1]} (missing inputs or another policy version)"
            )
    result = explain(policy, ctx, decision, record)
    if notes:
        from dataclasses import replace

        result = replace(result, notes=(*result.notes, *notes))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(result.to_text())
    return 0


def _files(paths: list[str]) -> Iterator[Path | None]:
    for name in paths:
        if name == "-":
            yield None
            continue
        path = Path(name)
        yield path
        n = 1
        while (rotated := path.with_name(f"{path.name}.{n}")).exists():
            yield rotated
            n += 1


def find_record(paths: list[str], decision_id: str) -> dict[str, Any] | None:
    """The decision-log record with ``decisionId``; lines that are not records are skipped."""
    for path in _files(paths):
        stream = sys.stdin if path is None else path.open(encoding="utf-8", errors="replace")
        try:
            for line in stream:
                if decision_id not in line:
                    continue
                start = line.find("{")
                try:
                    record = json.loads(line[start:]) if start >= 0 else None
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("decisionId") == decision_id:
                    return record
        finally:
            if path is not None:
                stream.close()
    return None


def context_from_record(record: dict[str, Any]) -> tuple[Any, list[str]]:
    """A ``RequestContext`` from what a record holds, and notes on what it lacks."""
    from ..context import RequestContext

    req = record.get("request") or {}
    if not req:
        raise_invalid("the record has no request summary (the request never became a context)")
    notes = ["rebuilt from the decision log: no query, no claims beyond subject and tenant, "
             "only the logged headers"]  # fmt: skip
    body: dict[str, Any] = {"present": False}
    if "body" in req and req["body"] is not None:
        sample = req["body"]
        if isinstance(sample, str):
            body = {"raw": sample}
        else:
            body = {"present": True, "json": {"sample": sample}}
        notes.append("the body is as logged (secret-looking fields masked)")
    else:
        notes.append("the body was not logged (see DECISION_LOG_BODY_ROUTES)")
    data = {
        "id": record.get("decisionId") or "",
        "request": {
            "method": req.get("method") or "GET",
            "path": req.get("path") or "/",
            "headers": req.get("headers") or {},
            "host": req.get("host"),
            "body": body,
        },
        "identity": {
            "authenticated": req.get("subject") is not None,
            "subject": req.get("subject"),
            "tenant": req.get("tenant"),
        },
        "client": {"ip": req.get("clientIp")},
    }
    if record.get("routeId"):
        data["request"]["routeId"] = record["routeId"]
    return RequestContext.from_dict(data), notes


def raise_invalid(reason: str) -> None:
    from .._exceptions import InvalidContext

    raise InvalidContext(reason)
