"""Every row of ``tests/data/bypass_catalogue.yaml``, through the Envoy adapter and the engine.

A row is built into the ``CheckRequest`` Envoy would send (raw path with its query, headers,
raw body bytes, jwt_authn payload in metadata), converted by ``check_request_to_context`` and
decided by the real policy. A row marked ``known_defect`` is a strict xfail: it fails the run
as soon as the engine is fixed, so the marker (not the row) gets removed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from _reliability_support import (
    CATALOGUE,
    CATALOGUE_POLICY,
    DEMO_POLICY,
    check_request,
    github_signature,
    stripe_signature,
)

from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.engine.pipeline import PLAIN, Phases, timed
from extauthz.envoy import check_request_to_context
from extauthz.policy import load_policy

POLICIES = {"demo": load_policy(DEMO_POLICY), "catalogue": load_policy(CATALOGUE_POLICY)}
DEMO_CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}
ROW_KEYS = {"name", "policy", "request", "expect", "why", "known_defect"}
REQUEST_KEYS = {
    "method", "path", "headers", "body", "body_json", "body_hex", "auth", "claims", "sign",
    "repeat",
}  # fmt: skip
EXPECT_KEYS = {"action", "status", "hits", "not_hits"}


def _rows() -> list[dict[str, Any]]:
    rows = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and rows
    return rows


ROWS = _rows()


def _body(req: Mapping[str, Any]) -> bytes | None:
    if "body" in req:
        return str(req["body"]).encode("utf-8")
    if "body_json" in req:
        return json.dumps(req["body_json"], ensure_ascii=False).encode("utf-8")
    if "body_hex" in req:
        return bytes.fromhex(req["body_hex"])
    return None


def _sign(spec: Mapping[str, Any], body: bytes, headers: dict[str, str]) -> None:
    over = str(spec["over"]).encode() if "over" in spec else body
    secret = str(spec["secret"]).encode() if "secret" in spec else None
    if spec["provider"] == "stripe":
        ts = int(time.time()) - int(spec.get("age", 0))
        kwargs: dict[str, Any] = {"timestamp": ts}
        if secret is not None:
            kwargs["secret"] = secret
        headers["stripe-signature"] = stripe_signature(over, **kwargs)
    elif spec["provider"] == "github":
        kwargs = {"secret": secret} if secret is not None else {}
        headers["x-hub-signature-256"] = github_signature(over, **kwargs)
    else:
        raise ValueError(f"unknown provider {spec['provider']!r}")


def _decide(row: Mapping[str, Any], phases: Phases = PLAIN) -> Any:
    req = row["request"]
    headers = {str(k): str(v) for k, v in (req.get("headers") or {}).items()}
    body = _body(req)
    if "sign" in req:
        assert body is not None
        _sign(req["sign"], body, headers)
    claims = req.get("claims") or (DEMO_CLAIMS if req.get("auth") else None)
    policy = POLICIES[row.get("policy", "demo")]
    store = InMemoryReplayStore(max_entries=64)
    decision = None
    for _ in range(int(req.get("repeat", 1))):
        check = check_request(req["method"], req["path"], headers=headers, body=body, claims=claims)
        ctx = check_request_to_context(check)
        decision = evaluate(policy, ctx, replay_store=store, phases=phases)
    return decision


def test_catalogue_rows_are_well_formed() -> None:
    names = [row.get("name") for row in ROWS]
    assert len(names) == len(set(names)), "duplicate row names"
    for row in ROWS:
        assert set(row) <= ROW_KEYS, (row.get("name"), set(row) - ROW_KEYS)
        assert {"name", "request", "expect", "why"} <= set(row), row.get("name")
        assert set(row["request"]) <= REQUEST_KEYS, (row["name"], set(row["request"]))
        assert set(row["expect"]) <= EXPECT_KEYS, (row["name"], set(row["expect"]))
        assert row["expect"]["action"] in ("ALLOW", "BLOCK", "MONITOR"), row["name"]
        assert row.get("policy", "demo") in POLICIES, row["name"]
        assert len(str(row["why"])) >= 20, f"{row['name']}: say what the engine must do and why"
    # The list, each present at least once.
    text = CATALOGUE.read_text(encoding="utf-8")
    for trick in (
        "%2e%2e/", "%252e", "%2F", "//admin", "/api/./admin", "%c0%ae", "%00", "pOsT",
        "\\r\\n", "\uff41\uff44\uff4d\uff49\uff4e", "http://2130706433/", "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/", "http://169.254.169.254.nip.io/", "[[{", "$ne",
    ):  # fmt: skip
        assert trick in text, trick


def _params() -> list[Any]:
    params = []
    for row in ROWS:
        marks = []
        if row.get("known_defect"):
            marks.append(pytest.mark.xfail(reason=row["known_defect"], strict=True))
        params.append(pytest.param(row, id=row["name"], marks=marks))
    return params


@pytest.mark.parametrize("row", _params())
def test_bypass_row(row: dict[str, Any]) -> None:
    expect = row["expect"]
    decision = _decide(row)
    actual = {
        "action": decision.action,
        "status": decision.status_code,
        "hits": list(decision.rule_ids),
        "reason": decision.reason,
    }
    where = f"{row['name']}: expected {expect}, actual {actual}; why: {row['why']}"
    assert "engine.internalError" not in decision.rule_ids, where
    assert decision.action == expect["action"], where
    if "status" in expect:
        assert decision.status_code == expect["status"], where
    for hit in expect.get("hits", ()):
        assert hit in decision.rule_ids, where
    for hit in expect.get("not_hits", ()):
        assert hit not in decision.rule_ids, where


def test_traced_phases_decide_every_row_as_the_plain_ones() -> None:
    """The tracing seam (``timed`` phases) never changes a decision, and times every phase."""
    seen: set[str] = set()

    def record(name: str, start: int, end: int) -> None:
        assert 0 < start <= end, (name, start, end)
        seen.add(name)

    def without_id(d: Any) -> Any:  # each request built gets its own id
        return dataclasses.replace(d, metadata=dataclasses.replace(d.metadata, request_id=None))

    for row in ROWS:
        assert without_id(_decide(row, timed(record))) == without_id(_decide(row)), row["name"]
    assert seen == {"route", "body", "vulnerability", "limits", "contract", "webhook", "cel"}
