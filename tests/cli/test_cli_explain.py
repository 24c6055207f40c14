"""``extauthz explain`` (from a context or a decision-log record) and ``evaluate --explain``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extauthz.cli import main
from extauthz.context import RequestContext
from extauthz.engine import evaluate
from extauthz.policy import load_policy
from extauthz.server.config import ServerConfig
from extauthz.server.decision_log import DecisionLog, DecisionLogSettings

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"
CTX = {
    "id": "dec-42",
    "request": {
        "method": "POST",
        "path": "/api/v1/licenses/activate",
        "headers": {"content-type": "application/json", "authorization": "Bearer abc.def.ghi"},
        "body": {"present": True, "json": {"sample": {
            "licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d", "tenantId": "globex"}}},
    },
    "identity": {"authenticated": True, "subject": "alice", "tenant": "acme"},
}  # fmt: skip


def test_explain_a_context_prints_phases_locations_and_cel_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(CTX))
    assert main(["explain", "--policy", str(DEMO), "--context", str(ctx)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("decision dec-42: BLOCK 403")
    for phase in ("route", "vulnerability", "limits", "contract", "webhook", "replay", "cel"):
        assert f" {phase} " in out
    assert f"tenant.binding (critical, cel) at {DEMO}: routes[0].rules[1]" in out
    assert 'request.body.tenantId = "globex"' in out and 'identity.tenant = "acme"' in out


def test_evaluate_explain_prints_decision_and_explanation_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(CTX))
    assert main(["evaluate", "--explain", "--policy", str(DEMO), "--context", str(ctx)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["action"] == "BLOCK"
    hits = {h["id"]: h for h in out["explain"]["hits"]}
    assert hits["tenant.binding"]["location"] == f"{DEMO}: routes[0].rules[1]"
    assert [p["name"] for p in out["explain"]["phases"] if p["ran"]] == [
        "route", "vulnerability", "limits", "contract", "cel"
    ]  # fmt: skip


def _logged(tmp_path: Path, body_routes: str = "") -> Path:
    """A real decision-log file holding the decision for CTX, as the server writes it."""
    path = tmp_path / "decisions.jsonl"
    config = ServerConfig(
        http_port=1, decision_log=f"file:{path}", decision_log_body_routes=body_routes
    )
    log = DecisionLog(DecisionLogSettings.from_config(config))
    ctx = RequestContext.from_dict(CTX)
    log.submit(evaluate(load_policy(DEMO), ctx), ctx, 0.001, "grpc")
    log.close()
    return path


def test_explain_a_decision_id_from_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _logged(tmp_path, body_routes="license-activate")
    rc = main(["explain", "dec-42", "--policy", str(DEMO), "--log", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith("decision dec-42: BLOCK 403")
    assert f"tenant.binding (critical, cel) at {DEMO}: routes[0].rules[1]" in out
    assert 'request.body.tenantId = "globex"' in out  # the opted-in body, as logged
    assert "rebuilt from the decision log" in out
    assert "the log says" not in out  # evaluated again, it came out the same


def test_explain_from_a_log_without_the_body_says_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _logged(tmp_path)
    assert main(["explain", "dec-42", "--policy", str(DEMO), "--log", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    notes = " ".join(out["notes"])
    assert "the body was not logged" in notes
    assert "the log says BLOCK" in notes  # without the body the contract hit differs


def test_explain_an_unknown_decision_id_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _logged(tmp_path)
    assert main(["explain", "nope", "--policy", str(DEMO), "--log", str(path)]) == 1
    assert f"decision nope is not in {path}" in capsys.readouterr().err
