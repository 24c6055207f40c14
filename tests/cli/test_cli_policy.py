"""CLI: ``policy check``, ``evaluate`` and ``test`` — exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extauthz.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "policies" / "demo.yaml"
CASES = REPO / "policies" / "tests"


def test_policy_check_valid(capsys) -> None:
    assert main(["policy", "check", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "sha256:" in out and "6 routes" in out


def test_policy_check_lists_every_problem_on_stderr(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """
            policyVersion: "0.1"
            routes:
              - id: a
                match: {method: GET, path: /a}
                contract: {requestSchemaRef: nope.json}
              - id: b
                match: {method: GET, path: /b}
                rules:
                  - {id: r, type: cel, config: {expr: "request.method =="}}
            """
        )
    )
    assert main(["policy", "check", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith(f"{bad}: routes[0].contract.requestSchemaRef: schema file not found")
    assert lines[1].startswith(f"{bad}: routes[1].rules[0].config.expr: invalid CEL expression")
    assert lines[-1] == f"{bad}: policy refused (2 problems)"


def test_policy_check_missing_file(tmp_path: Path, capsys) -> None:
    assert main(["policy", "check", str(tmp_path / "x.yaml")]) == 1
    assert "policy file not found" in capsys.readouterr().err


def write_ctx(tmp_path: Path, data: dict) -> Path:
    f = tmp_path / "ctx.json"
    f.write_text(json.dumps(data))
    return f


def test_evaluate_prints_the_decision(tmp_path: Path, capsys) -> None:
    ctx = write_ctx(
        tmp_path,
        {
            "id": "abc",
            "request": {"method": "GET", "path": "/api/v1/licenses/L1"},
            "identity": {"authenticated": True},
        },
    )
    assert main(["evaluate", "--policy", str(DEMO), "--context", str(ctx)]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] == "ALLOW"
    assert decision["metadata"]["routeId"] == "license-get"
    assert decision["metadata"]["requestId"] == "abc"
    ctx = write_ctx(tmp_path, {"request": {"method": "GET", "path": "/admin/x"}})
    assert main(["evaluate", "--policy", str(DEMO), "--context", str(ctx), "--compact"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["ruleHits"][0]["id"] == "admin.denied"


def test_evaluate_bad_inputs(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "ctx.json"
    bad.write_text('{"request": {"method": "GET"}}')
    assert main(["evaluate", "--policy", str(DEMO), "--context", str(bad)]) == 1
    assert "request.path" in capsys.readouterr().err
    assert main(["evaluate", "--policy", str(DEMO), "--context", str(tmp_path / "no")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["evaluate", "--policy", str(tmp_path / "no.yaml"), "--context", str(bad)]) == 1


def test_test_command_passes_on_the_demo_cases(capsys) -> None:
    assert main(["test", "--policy", str(DEMO), str(CASES)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    passed = int(out[-1].split()[0])
    assert out[-1] == f"{passed} passed, 0 failed"
    assert passed >= 35


def test_demo_cases_cover_every_rule_of_the_demo_policy() -> None:
    text = "\n".join(p.read_text() for p in CASES.glob("*.yaml"))
    for rule_id in (
        "auth.required", "tenant.binding", "admin.denied", "contract.schema.invalid",
        "contract.unknownField", "vulnerability.prototypePollution",
        "vulnerability.pathTraversal", "vulnerability.ssrfInternal",
        "vulnerability.commandInjection", "vulnerability.nosqlInjection", "limit.body.max",
        "limit.json.depth", "limit.array.max", "request.body.malformed",
        "request.path.ambiguous", "route.unmatched", "webhook.stripe.signature",
        "webhook.stripe.replay", "webhook.github.signature", "webhook.github.replay",
    ):  # fmt: skip
        assert rule_id in text, rule_id


def test_test_command_reports_failures(tmp_path: Path, capsys) -> None:
    (tmp_path / "cases.yaml").write_text(
        textwrap.dedent(
            """
            cases:
              - name: passes
                context: {request: {method: GET, path: /healthz}}
                expect: {action: ALLOW}
              - name: wrong action
                context: {request: {method: GET, path: /admin}}
                expect: {action: ALLOW, status: 200, ruleIds: []}
              - name: wrong ids
                context: {request: {method: GET, path: /admin}}
                expect: {action: BLOCK, ruleIds: [auth.required]}
            """
        )
    )
    (tmp_path / "broken.yaml").write_text("name: x\ncontext: {}\n")
    assert main(["test", "--policy", str(DEMO), str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "cases.yaml::wrong action" in out
    assert "action: expected ALLOW, got BLOCK" in out
    assert "status: expected 200, got 403" in out
    assert "ruleIds: expected ['auth.required'], got ['admin.denied']" in out
    assert "broken.yaml: case: 'expect' with at least 'action' is required" in out
    assert "cases.yaml::passes" not in out
    assert out.strip().splitlines()[-1] == "1 passed, 3 failed"


def test_test_command_signs_webhook_cases(tmp_path: Path, capsys) -> None:
    (tmp_path / "hook.json").write_text(
        json.dumps(
            {
                "name": "signed at a fixed time",
                "now": 1700000000,
                "context": {
                    "request": {
                        "method": "POST",
                        "path": "/webhooks/stripe",
                        "headers": {"content-type": "application/json"},
                        "body": {"raw": '{"id":"evt_x","type":"a"}'},
                    }
                },
                "sign": {
                    "provider": "stripe",
                    "secret": "whsec_demo_contractshield",
                    "timestamp": 1700000000 - 10,
                },
                "expect": {"action": "ALLOW", "ruleIds": []},
            }
        )
    )
    assert main(["test", "--policy", str(DEMO), str(tmp_path), "-v"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and out.strip().endswith("1 passed, 0 failed")


def test_test_command_with_no_cases_fails(tmp_path: Path, capsys) -> None:
    assert main(["test", "--policy", str(DEMO), str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == "0 passed, 0 failed"
    assert main(["test", "--policy", str(DEMO), str(tmp_path / "missing")]) == 1


@pytest.mark.timeout(60)
def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "check", str(DEMO)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.timeout(60)
def test_evaluate_reads_the_context_from_stdin() -> None:
    ctx = {"request": {"method": "GET", "path": "/admin/users"}}
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "evaluate", "--policy", str(DEMO), "--context", "-",
         "--compact"],
        input=json.dumps(ctx), capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["action"] == "BLOCK" and decision["statusCode"] == 403
    assert [h["id"] for h in decision["ruleHits"]] == ["admin.denied"]


def test_example_contexts(capsys) -> None:
    examples = REPO / "policies" / "examples"
    assert main(["evaluate", "--policy", str(DEMO), "--context",
                 str(examples / "clean-activation.json")]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["action"] == "ALLOW"
    assert main(["evaluate", "--policy", str(DEMO), "--context",
                 str(examples / "attack-activation.json")]) == 0  # fmt: skip
    ids = [h["id"] for h in json.loads(capsys.readouterr().out)["ruleHits"]]
    assert ids == [
        "vulnerability.prototypePollution", "vulnerability.ssrfInternal",
        "vulnerability.commandInjection", "contract.unknownField", "tenant.binding",
    ]  # fmt: skip
