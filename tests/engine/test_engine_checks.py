"""The check catalogue is the one home of the built-in checks: the policy schema, the compiler,
the rule types, the vulnerability phase and explain read their names, ids and defaults from it,
so a check added to it (here a test-only one) shows up in each of them."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from extauthz import webhooks
from extauthz.engine import checks, evaluate
from extauthz.engine.checks import Catalogue, Check, Detector
from extauthz.engine.explain import PHASES, explain
from extauthz.engine.limits import Limits
from extauthz.engine.vulnerability import VulnerabilityConfig
from extauthz.policy import _compile, _rule_types, _schema, load_policy_text
from tests.engine.conftest import build_ctx

PRODUCT = Path(__file__).resolve().parents[2] / "extauthz"


def test_every_entry_declares_itself_once() -> None:
    entries = checks.CATALOGUE.checks
    ids = [h for c in entries for h in c.hits]
    assert len(ids) == len(set(ids))
    names = [c.name for c in entries if c.name]
    assert len(names) == len(set(names))
    for c in entries:
        assert c.phase in (*PHASES, checks.ENGINE), c
        assert c.explain and c.hits, c
    assert all(d.hit.startswith("vulnerability.") for d in checks.DETECTORS)
    assert tuple(PHASES) == checks.PHASES


def test_the_policy_schema_takes_its_check_keys_from_the_catalogue() -> None:
    props = _schema.POLICY_SCHEMA["properties"]
    route = props["routes"]["items"]["properties"]
    detector_names = [d.name for d in checks.DETECTORS]
    for section in (props["defaults"]["properties"]["vulnerabilityChecks"], route["vulnerability"]):
        assert list(section["properties"]) == detector_names
    limit_names = [c.name for c in checks.LIMIT_CHECKS]
    for section in (props["defaults"]["properties"]["limits"], route["limits"]):
        assert list(section["properties"]) == limit_names
    assert route["contract"]["properties"] == dict(checks.contract.CHECK.schema or {})


def test_builtin_ids_and_rule_types_come_from_the_catalogue() -> None:
    webhook_ids = {h for p in webhooks.names() for h in checks.webhook.hit_ids(p)}
    assert checks.CATALOGUE.builtin_ids() | webhook_ids == _compile.BUILTIN_IDS
    assert {c.name: c.hit for c in checks.LIMIT_CHECKS} == _rule_types.LIMIT_HITS
    assert tuple(_rule_types.CONTRACT_HITS) == checks.contract.CHECK.hits
    assert Limits() == Limits(*(c.default for c in checks.LIMIT_CHECKS))
    defaults = VulnerabilityConfig()
    assert [c.enabled for c in defaults.checks] == [d.default for d in checks.DETECTORS]


def test_no_builtin_check_name_or_hit_id_is_retyped_in_product_code() -> None:
    """Outside the catalogue (demo and devstack aside), no string literal is a check's name
    or a built-in hit id: the code names them through the catalogue."""
    spelled = set(checks.CATALOGUE.builtin_ids())
    spelled |= {c.name for c in (*checks.DETECTORS, *checks.LIMIT_CHECKS)}
    found = []
    for path in sorted(PRODUCT.rglob("*.py")):
        rel = path.relative_to(PRODUCT).as_posix()
        if rel.startswith(("engine/checks/", "demo/", "devstack/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in spelled:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, found
    assert len(spelled) > 20  # the scan looked for something


# A detector the product does not have: what adding one file to the catalogue does.
def _marker_reason(value: str) -> str | None:
    return "test marker" if "MARKER!" in value else None


MARKER = Detector(
    name="testMarker",
    hit="vulnerability.testMarker",
    default=False,
    explain="a test-only detector",
    strings=_marker_reason,
    string_triggers=("MARKER!",),
)
WITH_MARKER = Catalogue(detectors=(*checks.DETECTORS, MARKER))


def test_a_key_detector_without_triggers_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="key_triggers"):
        Detector("ungated", "vulnerability.ungated", False, "x", keys=lambda k, v: None)


def test_a_new_detector_reaches_the_schema_compiler_phase_and_explain() -> None:
    schema = _schema.vulnerability_schema(WITH_MARKER)
    assert schema["properties"]["testMarker"] == MARKER.schema
    assert MARKER.hit in WITH_MARKER.builtin_ids()
    # The compiler reads the new key by its policy name.
    base = VulnerabilityConfig(detectors=WITH_MARKER.detectors)
    assert not base.setting("test_marker").enabled
    cfg = _compile._vulns({"testMarker": True, "xss": True}, base)
    assert cfg.setting("test_marker") == Check(True) and cfg.xss.enabled
    # The phase runs it, and explain names it, from a policy whose defaults enable it.
    policy = load_policy_text("policyVersion: '0.1'\nroutes: []\n", source="p.yaml")
    policy = dataclasses.replace(
        policy, defaults=dataclasses.replace(policy.defaults, vulnerability=cfg)
    )
    ctx = build_ctx("POST", "/anything", body={"note": "a MARKER! here"})
    decision = evaluate(policy, ctx)
    assert decision.rule_ids == (MARKER.hit,)
    out = explain(policy, ctx, decision)
    vulnerability = next(p for p in out.phases if p.name == "vulnerability")
    assert re.search(r"\btestMarker\b", vulnerability.detail)
    (hit,) = out.hits
    assert (hit.phase, hit.location) == ("vulnerability", "p.yaml: defaults.vulnerabilityChecks")
