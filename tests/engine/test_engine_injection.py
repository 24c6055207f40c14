"""sqlInjection and xss: opt-in libinjection checks with ``fields`` scoping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from extauthz.engine import evaluate
from extauthz.engine.vulnerability import sqli_reason, xss_reason
from extauthz.policy import load_policy_text
from tests.engine.conftest import build_ctx

DATA = Path(__file__).parent / "data"


def _lines(name: str) -> list[str]:
    return [x for x in (DATA / name).read_text().splitlines() if x.strip()]


def _policy(vuln: str) -> object:
    return load_policy_text(
        textwrap.dedent(f"""
        policyVersion: "0.1"
        routes:
          - id: r
            match: {{path: /r}}
            vulnerability: {vuln}
          - id: plain
            match: {{path: /plain}}
        """)
    )


def test_known_payloads_are_detected_and_prose_is_not() -> None:
    sqli, xss, prose = _lines("sqli.txt"), _lines("xss.txt"), _lines("prose.txt")
    assert sum(1 for p in sqli if sqli_reason(p)) >= 0.9 * len(sqli)
    assert sum(1 for p in xss if xss_reason(p)) >= 0.9 * len(xss)
    assert [t for t in prose if sqli_reason(t) or xss_reason(t)] == []
    assert sqli_reason("O'Brien's order, and 2 more") is None


@pytest.mark.parametrize(
    ("body", "query", "hit"),
    [
        ({"name": "1' OR '1'='1"}, {}, "vulnerability.sqlInjection"),
        ({"deep": [{"q": "1 UNION SELECT password FROM users"}]}, {}, "vulnerability.sqlInjection"),
        ({"name": "ok"}, {"id": "1; DROP TABLE users--"}, "vulnerability.sqlInjection"),
        ({"comment": "<img src=x onerror=alert(1)>"}, {}, "vulnerability.xss"),
    ],
)
def test_enabled_checks_block(body: object, query: dict[str, str], hit: str) -> None:
    p = _policy("{sqlInjection: true, xss: {fields: [comment]}}")
    d = evaluate(p, build_ctx("POST", "/r", body=body, query=query))  # type: ignore[arg-type]
    assert (d.action, [h.id for h in d.rule_hits]) == ("BLOCK", [hit])


def test_opt_in_and_fields_scoping() -> None:
    p = _policy("{sqlInjection: true, xss: {fields: [comment]}}")
    xss = {"other": "<script>alert(1)</script>"}
    assert evaluate(p, build_ctx("POST", "/r", body=xss)).action == "ALLOW"  # type: ignore[arg-type]
    sqli = {"name": "' OR 1=1--", "comment": "<script>alert(1)</script>"}
    assert evaluate(p, build_ctx("POST", "/plain", body=sqli)).action == "ALLOW"  # type: ignore[arg-type]
