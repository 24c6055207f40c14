"""Policy test cases for ``extauthz test``: loading case files and checking one case."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._exceptions import InvalidContext
from ..context import RequestContext
from ..engine import InMemoryReplayStore, evaluate
from ..engine.model import CompiledPolicy
from ..webhooks import get as webhook_provider
from ._loader import parse_document

_CASE_KEYS = {"name", "description", "context", "now", "sign", "repeat", "expect"}
_EXPECT_KEYS = {"action", "status", "ruleIds"}
_TS = re.compile(r"^now(?:([+-])(\d+))?$")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    context: Mapping[str, Any]
    expect: Mapping[str, Any]
    now: float | None = None
    sign: Mapping[str, Any] | None = None
    repeat: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def load_cases(path: Path) -> tuple[list[Case], str | None]:
    """Read one case file; return (cases, None) or ([], error)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], f"cannot read: {exc.strerror or exc}"
    doc, problems = parse_document(data, str(path))
    if problems:
        return [], problems[0].reason
    if isinstance(doc, Mapping) and "cases" in doc:
        raw_cases = doc["cases"]
        if not isinstance(raw_cases, list):
            return [], "'cases' must be a list"
    else:
        raw_cases = [doc]
    cases: list[Case] = []
    for i, raw in enumerate(raw_cases):
        where = f"cases[{i}]" if len(raw_cases) > 1 else "case"
        if not isinstance(raw, Mapping):
            return [], f"{where}: must be a mapping"
        unknown = set(raw) - _CASE_KEYS
        if unknown:
            return [], f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_CASE_KEYS)})"
        expect = raw.get("expect")
        if not isinstance(expect, Mapping) or "action" not in expect:
            return [], f"{where}: 'expect' with at least 'action' is required"
        if set(expect) - _EXPECT_KEYS:
            return [], f"{where}.expect: unknown key(s) {sorted(set(expect) - _EXPECT_KEYS)}"
        if not isinstance(raw.get("context"), Mapping):
            return [], f"{where}: 'context' (a RequestContext object) is required"
        repeat = raw.get("repeat", 1)
        if not isinstance(repeat, int) or not 1 <= repeat <= 100:
            return [], f"{where}: 'repeat' must be an integer from 1 to 100"
        cases.append(
            Case(
                name=str(raw.get("name") or (path.stem if len(raw_cases) == 1 else where)),
                context=raw["context"],
                expect=expect,
                now=raw.get("now"),
                sign=raw.get("sign"),
                repeat=repeat,
            )
        )
    return cases, None


def _timestamp(spec: Any, now: float) -> int:
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    m = _TS.match(str(spec if spec is not None else "now"))
    if m is None:
        raise ValueError(f"sign.timestamp must be 'now', 'now-N', 'now+N' or an integer: {spec!r}")
    offset = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
    return int(now) + offset


def build_context(case: Case, now: float) -> RequestContext:
    ctx = RequestContext.from_dict(case.context)
    if case.sign is None:
        return ctx
    spec = case.sign
    timestamp = _timestamp(spec.get("timestamp"), now)
    provider = webhook_provider(str(spec.get("provider", "")))
    secret = str(spec.get("secret", "")).encode()
    headers = provider.sign_request(secret, ctx.request, ctx.request.body.raw or b"", timestamp)
    merged = dict(ctx.request.headers)
    merged.update(headers)
    return replace(ctx, request=replace(ctx.request, headers=merged))


def run_case(policy: CompiledPolicy, case: Case, default_now: float) -> list[str]:
    """Return the ways the case failed (empty when it passed)."""
    now = float(case.now) if case.now is not None else default_now
    try:
        ctx = build_context(case, now)
    except (InvalidContext, ValueError) as exc:
        return [f"invalid case: {exc}"]
    store = InMemoryReplayStore()
    decision = None
    for _ in range(case.repeat):
        decision = evaluate(policy, ctx, replay_store=store, now=now)
    assert decision is not None
    problems: list[str] = []
    expect = case.expect
    if decision.action != expect["action"]:
        problems.append(f"action: expected {expect['action']}, got {decision.action}")
    if "status" in expect and decision.status_code != expect["status"]:
        problems.append(f"status: expected {expect['status']}, got {decision.status_code}")
    if "ruleIds" in expect:
        want = sorted(set(expect["ruleIds"] or ()))
        got = sorted(set(decision.rule_ids))
        if want != got:
            problems.append(f"ruleIds: expected {want}, got {got}")
    if problems:
        problems.append(f"decision: {decision.to_json()}")
    return problems
