"""Contexts as upstream's PEPs send them get every check, at every door that takes a context:
``POST /v1/evaluate``, ``POST /evaluate``, ``extauthz evaluate`` and ``extauthz test``.

Issue 25 item 4: a query string inside ``request.path`` was dropped (ALLOW where the same value
in ``request.query`` is a BLOCK), and nested query objects (Express's qs: ``?f[u]=...`` is
``{"f": {"u": ...}}``) reached the detectors as JSON text. Each context here must get the
decision that the same request gets through Envoy (the gRPC adapter reading the raw query).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from _server_support import check_request

from extauthz import RequestContext, evaluate, load_policy
from extauthz.cli import main
from extauthz.envoy.request import check_request_to_context

META = "http://169.254.169.254/latest/meta-data/"
UNION = "1 UNION SELECT password FROM users"

POLICY = textwrap.dedent("""
    policyVersion: "0.1"
    defaults:
      unmatchedRouteAction: block
    routes:
      - id: x
        match: {method: GET, path: /api/x}
        vulnerability: {sqlInjection: true, nosqlInjection: true}
""")

# (name, path, query, the raw query Envoy would see, expected action, expected hit ids)
CASES: list[tuple[str, str, Any, str, str, list[str]]] = [
    ("query in the path", f"/api/x?u={META}", None, f"u={META}",
     "BLOCK", ["vulnerability.ssrfInternal"]),
    ("the same in query", "/api/x", {"u": META}, f"u={META}",
     "BLOCK", ["vulnerability.ssrfInternal"]),
    ("qs nested url", "/api/x", {"f": {"u": META}}, f"f[u]={META}",
     "BLOCK", ["vulnerability.ssrfInternal"]),
    ("qs nested sql", "/api/x", {"f": {"s": UNION}}, f"f[s]={quote(UNION)}",
     "BLOCK", ["vulnerability.sqlInjection"]),
    ("qs array of objects", "/api/x", {"a": [{"u": "ok"}, {"u": META}]}, f"a[1][u]={META}",
     "BLOCK", ["vulnerability.ssrfInternal"]),
    ("qs repeated key", "/api/x", {"u": ["https://example.com/", META]},
     f"u=https://example.com/&u={META}", "BLOCK", ["vulnerability.ssrfInternal"]),
    ("qs operator key", "/api/x", {"user": {"$ne": ""}}, "user[$ne]=",
     "BLOCK", ["vulnerability.nosqlInjection"]),
    ("qs proto key", "/api/x", {"a": {"__proto__": {"x": "1"}}}, "a[__proto__][x]=1",
     "BLOCK", ["vulnerability.prototypePollution"]),
    ("both, path adds a value", f"/api/x?u={META}", {"u": "https://example.com/"},
     f"u=https://example.com/&u={META}", "BLOCK", ["vulnerability.ssrfInternal"]),
    ("clean nested", "/api/x", {"f": {"u": "https://example.com/", "n": 3, "b": True}},
     "f[u]=https://example.com/&f[n]=3&f[b]=true", "ALLOW", []),
    ("clean path query", "/api/x?page=2#top", None, "page=2", "ALLOW", []),
]  # fmt: skip
IDS = [c[0] for c in CASES]


def context(path: str, query: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "GET", "path": path, "headers": {}}
    if query is not None:
        request["query"] = query
    return {"version": "0.1", "id": "pep-1", "request": request}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pep") / "policy.yaml"
    path.write_text(POLICY)
    return path


def hit_ids(decision: dict[str, Any]) -> list[str]:
    return [h["id"] for h in decision.get("ruleHits", [])]


@pytest.mark.parametrize(("name", "path", "query", "raw", "action", "hits"), CASES, ids=IDS)
def test_envoy_reading_the_raw_query_decides_the_same(
    policy_file: Path, name: str, path: str, query: Any, raw: str, action: str, hits: list[str]
) -> None:
    """The reference: the gRPC adapter splits ``:path`` and reads the raw query itself."""
    policy = load_policy(policy_file)
    via_envoy = evaluate(policy, check_request_to_context(check_request("GET", f"/api/x?{raw}")))
    via_context = evaluate(policy, RequestContext.from_dict(context(path, query)))
    assert (via_envoy.action, [h.id for h in via_envoy.rule_hits]) == (action, hits)
    assert (via_context.action, [h.id for h in via_context.rule_hits]) == (action, hits)


async def test_v1_evaluate_and_evaluate(start_inproc, free_port, policy_file: Path) -> None:  # type: ignore[no-untyped-def]
    server = await start_inproc(http_port=free_port(), policy_path=str(policy_file))
    base = f"http://127.0.0.1:{server.http_port}"
    async with aiohttp.ClientSession(base) as http:
        for name, path, query, _raw, action, hits in CASES:
            async with http.post("/v1/evaluate", json=context(path, query)) as resp:
                decision = await resp.json()
                assert resp.status == 200, name
            assert (decision["action"], hit_ids(decision)) == (action, hits), name
            async with http.post("/evaluate", json={"context": context(path, query)}) as resp:
                assert resp.status == 200, name
                decision = (await resp.json())["decision"]
            assert (decision["action"], hit_ids(decision)) == (action, hits), name
        # A context that cannot be read one way is refused with the reason, at both doors.
        bad = {"request": {"method": "GET", "path": "?u=1"}}
        async with http.post("/v1/evaluate", json=bad) as resp:
            assert resp.status == 400
            assert "request.path: no path before the query" in (await resp.json())["error"]
        async with http.post("/evaluate", json={"context": bad}) as resp:
            assert resp.status == 400
            assert "request.path: no path before the query" in (await resp.json())["error"]


@pytest.mark.parametrize(("name", "path", "query", "raw", "action", "hits"), CASES, ids=IDS)
def test_extauthz_evaluate(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy_file: Path,
    name: str,
    path: str,
    query: Any,
    raw: str,
    action: str,
    hits: list[str],
) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(context(path, query)))
    assert main(["evaluate", "--policy", str(policy_file), "--context", str(ctx)]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert (decision["action"], hit_ids(decision)) == (action, hits)


def test_extauthz_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    cases = [
        {"name": name, "context": context(path, query),
         "expect": {"action": action, "ruleIds": hits}}
        for name, path, query, _raw, action, hits in CASES
    ]  # fmt: skip
    (tmp_path / "cases.yaml").write_text(json.dumps({"cases": cases}))
    assert main(["test", "--policy", str(policy_file), str(tmp_path)]) == 0
    assert f"{len(CASES)} passed, 0 failed" in capsys.readouterr().out
