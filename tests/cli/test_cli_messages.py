"""Issue 25 item 7: messages a newcomer reads, each as it now reads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extauthz import RequestContext, evaluate
from extauthz.cli import _policy, main
from extauthz.policy import load_policy_text


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_policy_check_counts_in_english(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "item.json").write_text('{"type": "object"}')
    one = write(
        tmp_path,
        """
        policyVersion: "0.1"
        routes:
          - id: a
            match: {method: POST, path: /a}
            contract: {requestSchemaRef: item.json}
    """,
    )
    assert main(["policy", "check", one]) == 0
    assert capsys.readouterr().out.endswith(", 1 route, 1 schema file)\n")
    none = write(tmp_path, 'policyVersion: "0.1"\nroutes: []\n')
    assert main(["policy", "check", none]) == 0
    assert capsys.readouterr().out.endswith(", 0 routes, 0 schema files)\n")


def test_a_lower_case_method_is_named_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
        policyVersion: "0.1"
        routes:
          - {id: a, match: {method: get, path: /a}}
          - {id: b, match: {method: [POST, delete], path: /b}}
    """,
    )
    assert main(["policy", "check", path]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith(
        "routes[0].match.method: 'get' is not an upper-case HTTP method: write 'GET' ('*' for any)"
    )
    assert err[1].endswith("routes[1].match.method[1]: 'delete' is not an upper-case HTTP "
                           "method: write 'DELETE' ('*' for any)")  # fmt: skip
    assert "^(" not in "\n".join(err)  # no bare regex


def test_a_slow_load_says_what_it_is_doing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'policyVersion: "0.1"\nroutes: []\n')
    assert main(["policy", "check", path]) == 0
    assert capsys.readouterr().err == ""  # a quick load prints nothing extra
    monkeypatch.setattr(_policy, "SLOW_LOAD_NOTICE_S", 0.0)
    real = _policy.__dict__.get("load_policy")
    assert real is None  # imported inside run(): patch where it is looked up

    import extauthz.policy as policy_module

    original = policy_module.load_policy

    def slow(*args: object, **kwargs: object) -> object:
        import time

        time.sleep(0.3)  # longer than the (patched) notice delay: the notice must be out
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(policy_module, "load_policy", slow)
    assert main(["policy", "check", path]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: loading: parsing the policy, then validating and compiling")


PARAMS = """
    openapi: 3.0.3
    info: {title: t, version: "1"}
    paths:
      /pets:
        get:
          parameters:
            - {name: limit, in: query, schema: {type: integer, maximum: 100}}
          responses: {"200": {description: ok}}
"""


def test_a_parameter_error_names_the_value_not_the_body(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(textwrap.dedent(PARAMS))
    policy = load_policy_text(
        'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: api.yaml}\n', base_dir=tmp_path
    )
    ctx = RequestContext.from_dict(
        {"request": {"method": "GET", "path": "/pets", "query": {"limit": "abc"}}}
    )
    (hit,) = evaluate(policy, ctx).rule_hits
    assert hit.message == "query parameter 'limit' 'abc': value must be integer"


def test_extra_properties_are_named_sorted_not_as_a_python_set() -> None:
    policy = load_policy_text(
        textwrap.dedent("""
        policyVersion: "0.1"
        routes:
          - id: r
            match: {method: POST, path: /r}
            contract:
              requestSchema:
                type: object
                additionalProperties: false
                properties: {a: {type: string}}
        """)
    )

    def message(body: dict[str, object]) -> str:
        ctx = RequestContext.from_dict(
            {"request": {"method": "POST", "path": "/r", "headers": {"content-type":
             "application/json"}, "body": {"raw": json.dumps(body)}}}
        )  # fmt: skip
        (hit,) = evaluate(policy, ctx).rule_hits
        return hit.message

    assert message({"a": "x", "admin": True}) == "body must not contain the property 'admin'"
    assert message({"zz": 1, "a": "x", "admin": True, "b": 2}) == (
        "body must not contain the properties 'admin', 'b', 'zz'"
    )


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """``extauthz evaluate ... | head -1``: the pipe closes before the answer is written; the
    command stops with 141 (128 + SIGPIPE, as a shell reports it), no traceback."""
    demo = Path(__file__).resolve().parents[2] / "policies"
    proc = subprocess.Popen(
        [sys.executable, "-m", "extauthz", "evaluate", "--policy", str(demo / "demo.yaml"),
         "--context", str(demo / "examples" / "clean-activation.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_broken_pipe_in_process_returns_141(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` called in-process, stdout without a file descriptor (a test's capture)."""
    from extauthz.cli import _evaluate

    def broken(args: object) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(_evaluate, "run", broken)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert main(["evaluate", "--policy", "p.yaml", "--context", "c.json"]) == 141
