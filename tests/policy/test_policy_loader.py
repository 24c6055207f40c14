"""Policy loading: every refusal names the file, the path inside the policy and the reason."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from extauthz._exceptions import InvalidPolicy, PolicyProblem
from extauthz.policy import load_policy, load_policy_text

REPO = Path(__file__).resolve().parents[2]
GOOD_ROUTE = """
  - id: r1
    match: {method: GET, path: /a}
"""


def problems(text: str, tmp_path: Path | None = None, name: str = "p.yaml") -> list[PolicyProblem]:
    if tmp_path is not None:
        f = tmp_path / name
        f.write_text(textwrap.dedent(text))
        with pytest.raises(InvalidPolicy) as info:
            load_policy(f)
    else:
        with pytest.raises(InvalidPolicy) as info:
            load_policy_text(textwrap.dedent(text), source="p.yaml")
    return list(info.value.errors)


def pairs(text: str, tmp_path: Path | None = None) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in problems(text, tmp_path)]


def test_demo_policy_loads() -> None:
    p = load_policy(REPO / "policies" / "demo.yaml")
    assert p.source.endswith("demo.yaml")
    assert p.loaded_at > 0
    assert "license-activate" in p.route_ids


def test_minimal_policy_and_defaults() -> None:
    p = load_policy_text('policyVersion: "0.1"\nroutes: []\n')
    assert p.route_ids == () and p.files == ()
    d = p.defaults
    assert (d.mode, d.unmatched_route_action, d.block_status_code) == ("enforce", "allow", 403)
    assert d.vulnerability.prototype_pollution.enabled
    assert not d.vulnerability.command_injection.enabled


def test_json_policies_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(
        json.dumps(
            {
                "policyVersion": "0.1",
                "routes": [{"id": "a", "match": {"method": "GET", "path": "/a"}}],
            }
        )
    )
    assert load_policy(f).route_ids == ("a",)


def test_version_hashes_policy_and_schemas(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object"}')
    text = """
policyVersion: "0.1"
routes:
  - id: a
    match: {method: POST, path: /a}
    contract: {requestSchemaRef: s.json}
"""
    f = tmp_path / "p.yaml"
    f.write_text(text)
    v1 = load_policy(f).version
    assert load_policy(f).version == v1
    (tmp_path / "s.json").write_text('{"type": "array"}')
    v2 = load_policy(f).version
    assert v2 != v1 and v2.startswith("sha256:") and len(v2) == 19
    assert load_policy(f).files == (f.resolve(), (tmp_path / "s.json").resolve())


def test_every_problem_is_listed_at_once() -> None:
    found = pairs(
        """
        policyVersion: "0.2"
        defualts: {}
        routes:
          - id: a
            match: {method: GET, path: /a}
            mdoe: enforce
          - id: b
            match: {method: GET, path: users}
            webhook: {provider: paypal, secret: x}
          - id: c
            match: {method: get, path: /c}
            rules:
              - {id: r, type: cel, config: {expr: "identity.authenticated &&& true"}}
        """
    )
    assert ("policyVersion", "must be '0.1', got '0.2'") in found
    assert any(p == "defualts" and "unknown key" in r for p, r in found)
    assert any(p == "routes[0].mdoe" and "unknown key" in r for p, r in found)
    assert any(p == "routes[1].webhook.provider" and "'stripe'" in r for p, r in found)
    assert any(p == "routes[1].match.path" and "start with '/'" in r for p, r in found)
    assert any(p == "routes[2].match.method" for p, _ in found)
    assert any(p == "routes[2].rules[0].config.expr" and "line 1, column 26" in r for p, r in found)
    assert len(found) >= 7


def test_an_unknown_provider_without_a_secret_is_a_problem_not_a_crash() -> None:
    found = pairs(
        """
        policyVersion: "0.1"
        routes:
          - {id: b, match: {path: /b}, webhook: {provider: paypal}}
        """
    )
    assert found == [
        (
            "routes[0].webhook.provider",
            "must be one of 'stripe', 'github', 'slack', 'twilio', got 'paypal'",
        )
    ]


def test_problem_strings_are_file_path_reason() -> None:
    (problem,) = problems('policyVersion: "0.1"\nroutes: []\nextra: 1\n')
    assert (
        str(problem)
        == "p.yaml: extra: unknown key (allowed: defaults, description, name, openapi, policyVersion, routes)"
    )


@pytest.mark.parametrize(
    ("snippet", "path", "reason"),
    [
        ("routes: {}", "routes", "is not of type 'array'"),
        ("routes:\n  - {match: {path: /a}}", "routes[0].id", "required key is missing"),
        ("routes:\n  - {id: a}", "routes[0].match", "required key is missing"),
        ("routes:\n  - {id: 'a b', match: {path: /a}}", "routes[0].id", "does not match"),
        ("defaults: {mode: strict}\nroutes: []", "defaults.mode", "'monitor', 'enforce'"),
        (
            "defaults: {unmatchedRouteAction: deny}\nroutes: []",
            "defaults.unmatchedRouteAction",
            "'allow'",
        ),
        (
            "defaults: {response: {blockStatusCode: 99}}\nroutes: []",
            "defaults.response.blockStatusCode",
            "less than the minimum",
        ),
        (
            "defaults: {limits: {maxJsonDepth: 0}}\nroutes: []",
            "defaults.limits.maxJsonDepth",
            "less than the minimum",
        ),
        (
            "defaults: {limits: {maxBodyBytes: '1MB'}}\nroutes: []",
            "defaults.limits.maxBodyBytes",
            "not of type 'integer'",
        ),
        (
            "defaults: {vulnerabilityChecks: {sqlInjektion: true}}\nroutes: []",
            "defaults.vulnerabilityChecks.sqlInjektion",
            "unknown key",
        ),
        (
            "defaults: {vulnerabilityChecks: {ssrfInternal: {fields: callbackUrl}}}\nroutes: []",
            "defaults.vulnerabilityChecks.ssrfInternal.fields",
            "not of type 'array'",
        ),
        (
            "defaults: {vulnerabilityChecks: {ssrfInternal: {feilds: [a]}}}\nroutes: []",
            "defaults.vulnerabilityChecks.ssrfInternal.feilds",
            "unknown key",
        ),
    ],
)
def test_structural_errors(snippet: str, path: str, reason: str) -> None:
    found = pairs('policyVersion: "0.1"\n' + snippet + "\n")
    assert any(p == path and reason in r for p, r in found), found


def route_problems(route_yaml: str, tmp_path: Path | None = None) -> list[tuple[str, str]]:
    return pairs('policyVersion: "0.1"\nroutes:\n' + textwrap.indent(route_yaml, "  "), tmp_path)


def test_duplicate_route_ids_and_matches() -> None:
    found = route_problems(
        "- {id: a, match: {method: GET, path: '/u/{id}'}}\n"
        "- {id: a, match: {method: POST, path: /v}}\n"
        "- {id: c, match: {method: GET, path: '/u/{other}'}}\n"
    )
    assert ("routes[1].id", "duplicate route id 'a' (also routes[0])") in found
    assert any(p == "routes[2].match" and "already matched by routes[0]" in r for p, r in found)


def test_contract_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"type": "nonsense"}')
    (tmp_path / "broken.json").write_text('{"type": ')
    (tmp_path / "remote.json").write_text('{"$ref": "https://example.com/x.json"}')
    found = route_problems(
        "- {id: a, match: {path: /a}, contract: {requestSchemaRef: missing.json}}\n"
        "- {id: b, match: {path: /b}, contract: {requestSchemaRef: bad.json}}\n"
        "- {id: c, match: {path: /c}, contract: {requestSchemaRef: broken.json}}\n"
        "- {id: d, match: {path: /d}, contract: {requestSchemaRef: remote.json}}\n"
        "- {id: e, match: {path: /e}, contract: {rejectUnknownFields: true}}\n"
        "- {id: f, match: {path: /f}, contract: {requestSchemaRef: bad.json, requestSchema: {}}}\n"
        "- {id: g, match: {path: /g}, contract: {requestSchema: {minLength: -1}}}\n",
        tmp_path,
    )
    where = dict(found)
    assert "schema file not found" in where["routes[0].contract.requestSchemaRef"]
    assert str(tmp_path / "missing.json") in where["routes[0].contract.requestSchemaRef"]
    assert "invalid JSON Schema" in where["routes[1].contract.requestSchemaRef"]
    assert "invalid JSON" in where["routes[2].contract.requestSchemaRef"]
    assert "only local" in where["routes[3].contract.requestSchemaRef"]
    assert "rejectUnknownFields needs a schema" in where["routes[4].contract.rejectUnknownFields"]
    assert "not both" in where["routes[5].contract"]
    assert "invalid JSON Schema" in where["routes[6].contract.requestSchema"]


def test_schema_refs_resolve_relative_to_the_policy_file(tmp_path: Path, monkeypatch) -> None:
    sub = tmp_path / "conf"
    (sub / "schemas").mkdir(parents=True)
    (sub / "schemas" / "s.json").write_text('{"type": "object"}')
    (sub / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes:\n  - id: a\n    match: {path: /a}\n'
        "    contract: {requestSchemaRef: schemas/s.json}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the policy's directory
    assert load_policy("conf/p.yaml").route_ids == ("a",)


def test_webhook_errors(monkeypatch) -> None:
    monkeypatch.delenv("CS_TEST_MISSING_SECRET", raising=False)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    found = route_problems(
        "- {id: a, match: {path: /a}, webhook: {provider: stripe}}\n"
        "- {id: b, match: {path: /b}, webhook: {provider: stripe, secret: x, secretRef: Y}}\n"
        "- {id: c, match: {path: /c}, webhook: {provider: github, secretRef: CS_TEST_MISSING_SECRET}}\n"
        "- {id: d, match: {path: /d}, webhook: {provider: github, secret: s, tolerance: 5}}\n"
    )
    where = dict(found)
    assert (
        "set the environment variable STRIPE_WEBHOOK_SECRET" in where["routes[0].webhook.provider"]
    )
    assert "not both" in where["routes[1].webhook"]
    assert "CS_TEST_MISSING_SECRET is not set" in where["routes[2].webhook.secretRef"]
    assert "unknown key" in where["routes[3].webhook.tolerance"]


def test_secret_ref_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CS_TEST_SECRET", "s3cret")
    p = load_policy_text(
        'policyVersion: "0.1"\nroutes:\n'
        "  - {id: a, match: {path: /a}, webhook: {provider: github, secretRef: CS_TEST_SECRET}}\n"
    )
    route = p.route("a")
    assert route is not None and route.webhook is not None
    assert route.webhook.secret == b"s3cret"


def test_rule_errors() -> None:
    found = route_problems(
        "- id: a\n"
        "  match: {path: /a}\n"
        "  rules:\n"
        "    - {id: x, type: cel, config: {expr: 'true'}}\n"
        "    - {id: x, type: cel, config: {expr: 'true'}}\n"
        "    - {id: limit.body.max, type: cel, config: {expr: 'true'}}\n"
        "    - {id: y, type: rego, config: {expr: 'true'}}\n"
        "    - {id: z, type: cel, config: {expr: 'user.admin'}}\n"
        "    - {id: w, type: cel, config: {expr: 'request.bodyy == 1'}}\n"
        "    - {id: v, type: cel, action: deny, config: {expr: 'true'}}\n"
        "    - {id: u, type: cel, config: {}}\n"
    )
    where = dict(found)
    assert "duplicate rule id 'x'" in where["routes[0].rules[1].id"]
    assert "id of a built-in check" in where["routes[0].rules[2].id"]
    assert "'cel', 'webhook'" in where["routes[0].rules[3].type"]
    assert "unknown variable 'user'" in where["routes[0].rules[4].config.expr"]
    assert "no field 'bodyy'" in where["routes[0].rules[5].config.expr"]
    assert "'block', 'monitor', 'allow'" in where["routes[0].rules[6].action"]
    assert "required key is missing" in where["routes[0].rules[7].config.expr"]


def test_an_overlong_cel_expression_is_one_problem_that_does_not_echo_it() -> None:
    expr = " || ".join(["true"] * 2000)
    found = route_problems(
        f"- id: a\n  match: {{path: /a}}\n  rules:\n    - {{id: x, type: cel, config: {{expr: '{expr}'}}}}\n"
    )
    assert [path for path, _ in found] == ["routes[0].rules[0].config.expr"]
    reason = found[0][1]
    assert "the limit is 4096" in reason and "true || true" not in reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: &x [1]\nb: *x\n", "anchors"),
        ("policyVersion: '0.1'\nroutes: []\n1: x\n", "keys must be strings"),
        ("policyVersion: '0.1'\nroutes: []\nroutes: []\n", "duplicate key"),
        ("policyVersion: '0.1'\nroutes: [\n", "invalid YAML: line"),
        ("- just\n- a list\n", "is not of type 'object'"),
        ("", "is not of type 'object'"),
    ],
)
def test_document_errors(text: str, reason: str) -> None:
    found = problems(text)
    assert any(reason in p.reason for p in found), found


def test_billion_laughs_is_refused_fast() -> None:
    lol = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
    for i in range(ord("b"), ord("j")):
        prev = chr(i - 1)
        lol += f"{chr(i)}: &{chr(i)} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
    found = problems(lol)
    assert "anchors" in found[0].reason


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(InvalidPolicy, match="directory"):
        load_policy(tmp_path)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidPolicy, match="UTF-8"):
        load_policy(bad)
    js = tmp_path / "p.json"
    js.write_text('{"policyVersion": "0.1", "routes": [], "routes": []}')
    with pytest.raises(InvalidPolicy, match="duplicate key"):
        load_policy(js)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("x")
    f.chmod(0)
    with pytest.raises(InvalidPolicy, match="cannot be read"):
        load_policy(f)


def test_compiled_policy_is_immutable() -> None:
    import dataclasses

    p = load_policy_text('policyVersion: "0.1"\nroutes: []\n')
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.version = "x"  # type: ignore[misc]


def test_catastrophic_schema_regex_is_accepted_and_decided_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D7/D7b: schema regexes run on RE2, so a backtracking-prone pattern is harmless.

    Not timed: the hostile value's search must run on RE2 (linear by design) and never on
    Python's ``re``, where it would take hours.
    """
    from _bounded import on_re2

    from extauthz.context import Body, HttpRequest, RequestContext
    from extauthz.engine import evaluate

    policy = load_policy_text(
        'policyVersion: "0.1"\nroutes:\n'
        "- id: a\n"
        "  match: {method: POST, path: /a}\n"
        "  contract: {requestSchema: {properties: {n: {type: string, pattern: '^(a+)+$'}}}}\n"
    )

    def decide(value: str) -> tuple[str, tuple[str, ...]]:
        raw = json.dumps({"n": value}).encode()
        request = HttpRequest(
            "POST", "/a", {}, content_type="application/json", body=Body(True, len(raw), raw=raw)
        )
        decision = evaluate(policy, RequestContext(request=request))
        return decision.action, decision.rule_ids

    with on_re2(monkeypatch) as seen:
        action, ids = decide("a" * 100_000 + "!")
    seen.assert_only_on_re2("^(a+)+$")
    assert action == "BLOCK" and "contract.schema.invalid" in ids
    assert decide("aaaa") == ("ALLOW", ())


def test_schema_regex_re2_cannot_run_refuses_the_policy(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(
        json.dumps({"properties": {"n": {"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]+$"}}})
    )
    found = problems(
        'policyVersion: "0.1"\nroutes:\n'
        "- id: a\n"
        "  match: {path: /a}\n"
        "  contract: {requestSchemaRef: s.json}\n"
        "- id: b\n"
        "  match: {path: /b}\n"
        "  contract: {requestSchema: {patternProperties: {'(?<!x)y': {}}}}\n",
        tmp_path,
    )
    by_path = {p.path: p for p in found}
    assert set(by_path) == {
        "routes[0].contract.requestSchemaRef",
        "routes[1].contract.requestSchema",
    }
    assert all(p.file.endswith("p.yaml") for p in found)
    ref = by_path["routes[0].contract.requestSchemaRef"].reason
    assert ref.startswith(str(tmp_path / "s.json") + ": ")
    assert "at '/properties/n/pattern'" in ref
    assert (
        "pattern uses a feature the linear-time regex engine does not support "
        "(lookaround/backreference): '^(?=.*[0-9])[a-z0-9]+$'"
    ) in ref
    inline = by_path["routes[1].contract.requestSchema"].reason
    assert "at '/patternProperties/(?<!x)y'" in inline and "'(?<!x)y'" in inline
