"""A base directory for a policy's file references (issue 25 item 5).

Upstream's tools resolve ``requestSchemaRef``/``openapiRef`` against the repository root, so its
``policy/policy.example.yaml`` names ``./examples/...``; here references resolve against the
policy file's directory unless a base directory is given: ``load_policy(base_dir=...)``,
``--policy-base-dir`` or ``POLICY_BASE_DIR`` on every command that loads a policy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from extauthz import InvalidPolicy, RequestContext, evaluate
from extauthz.cli import main
from extauthz.devstack import free_port
from extauthz.devstack.server import ServerProcess
from extauthz.policy import load_policy

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
OPENAPI = textwrap.dedent("""
    openapi: 3.0.3
    info: {title: items, version: "1"}
    paths:
      /items:
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object, required: [name], properties: {name: {type: string}}}
          responses: {"200": {description: ok}}
""")
POLICY = textwrap.dedent("""
    policyVersion: "0.1"
    routes:
      - id: items
        match: {method: POST, path: /items}
        contract:
          openapiRef: ./examples/openapi.yaml#/paths/~1items/post
          requestSchemaRef: ./examples/schemas/item.json
          rejectUnknownFields: true
""")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Upstream's layout: policies in ``policy/``, references written from the root."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "examples" / "schemas").mkdir(parents=True)
    (tmp_path / "examples" / "schemas" / "item.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "examples" / "openapi.yaml").write_text(OPENAPI)
    (tmp_path / "policy" / "policy.example.yaml").write_text(POLICY)
    return tmp_path


def items(body: dict[str, object]) -> RequestContext:
    raw = json.dumps(body)
    return RequestContext.from_dict(
        {"request": {"method": "POST", "path": "/items", "headers": {"content-type":
         "application/json"}, "body": {"raw": raw, "json": {"sample": body}}}}
    )  # fmt: skip


def test_in_place_it_is_refused_naming_where_it_looked(repo: Path) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        load_policy(repo / "policy" / "policy.example.yaml")
    reasons = [str(p) for p in caught.value.errors]
    assert any(str(repo / "policy" / "examples" / "openapi.yaml") in r for r in reasons), reasons


def test_with_the_root_as_base_it_loads_and_decides(repo: Path) -> None:
    policy = load_policy(repo / "policy" / "policy.example.yaml", base_dir=repo)
    assert (repo / "examples" / "schemas" / "item.json").resolve() in policy.files
    assert evaluate(policy, items({"name": "x"})).action == "ALLOW"
    blocked = evaluate(policy, items({"name": "x", "extra": 1}))
    assert [h.id for h in blocked.rule_hits] == ["contract.unknownField"]


def test_a_base_that_is_not_a_directory_is_refused(repo: Path) -> None:
    with pytest.raises(InvalidPolicy, match=r"policy base directory .*nope is not a directory"):
        load_policy(repo / "policy" / "policy.example.yaml", base_dir=repo / "nope")


def test_policy_check_takes_the_flag_and_the_variable(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = str(repo / "policy" / "policy.example.yaml")
    assert main(["policy", "check", policy]) == 1
    assert "OpenAPI file not found" in capsys.readouterr().err
    assert main(["policy", "check", policy, "--policy-base-dir", str(repo)]) == 0
    assert "OK (" in capsys.readouterr().out
    monkeypatch.setenv("POLICY_BASE_DIR", str(repo))
    assert main(["policy", "check", policy]) == 0
    assert "OK (" in capsys.readouterr().out
    ctx = repo / "ctx.json"
    ctx.write_text(items({"name": "x", "extra": 1}).to_json())
    assert main(["evaluate", "--policy", policy, "--context", str(ctx)]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "BLOCK"


def test_the_other_commands_take_the_flag(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = str(repo / "policy" / "policy.example.yaml")
    cases = repo / "cases"
    cases.mkdir()
    case = {"context": json.loads(items({"name": "x"}).to_json()), "expect": {"action": "ALLOW"}}
    (cases / "ok.json").write_text(json.dumps(case))
    base = ["--policy-base-dir", str(repo)]
    assert main(["test", "--policy", policy, str(cases), *base]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    ctx = repo / "ctx.json"
    ctx.write_text(items({"name": "x"}).to_json())
    assert main(["explain", "--policy", policy, "--context", str(ctx), *base]) == 0


def test_serve_takes_the_variable_and_reloads_a_schema_under_the_base(
    repo: Path, start_server: Callable[..., ServerProcess], short_tmp: Path
) -> None:
    server = start_server(
        policy=repo / "policy" / "policy.example.yaml",
        unix_socket_path=short_tmp / "pdp.sock",
        http_port=free_port(),
        env={"POLICY_BASE_DIR": str(repo), "HOT_RELOAD": "1", "RELOAD_DEBOUNCE_MS": "100"},
    )

    def action(body: dict[str, object]) -> str:
        request = urllib.request.Request(
            f"{server.http_url}/v1/evaluate",
            data=items(body).to_json().encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return str(json.loads(resp.read())["action"])

    assert action({"name": "x"}) == "ALLOW"
    # It said what it was loading before compiling (issue 25 item 7).
    assert f"loading policy {repo / 'policy' / 'policy.example.yaml'}" in server.log_tail(50)
    schema = {**SCHEMA, "required": ["name", "owner"],
              "properties": {"name": {"type": "string"}, "owner": {"type": "string"}}}  # fmt: skip
    (repo / "examples" / "schemas" / "item.json").write_text(json.dumps(schema))
    deadline = time.monotonic() + 10
    while action({"name": "x"}) != "BLOCK":
        assert time.monotonic() < deadline, "the schema edit was not reloaded"
        time.sleep(0.05)


def test_serve_refuses_to_start_without_it(repo: Path, short_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "POLICY_BASE_DIR"}
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--policy",
         str(repo / "policy" / "policy.example.yaml"), "--http-port", "0",
         "--unix-socket", str(short_tmp / "x.sock")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "OpenAPI file not found" in proc.stderr
