"""Hostile policy files are refused with ``file: path: reason`` and in bounded time.

A policy is trusted configuration, but it arrives through ConfigMaps, CI pipelines and hot
reload: a malformed or malicious file must never hang, exhaust memory or crash the process
that loads it (the running PDP, on reload). Cases that could crash the interpreter itself
run in a subprocess through ``extauthz policy check``.

Bounded by construction, not by a clock: each refusal names the limit that stopped it (size,
aliases, depth) before the expensive part; a big valid policy costs counted work linear in its
routes; hostile schema regexes run on RE2. Time limits here are hang guards (pytest's timeout,
a child's timeout) sized far beyond what a healthy run needs and far below what the guarded
blow-up would cost (hours). ``bench/hostile_bench.py`` prints the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest
from _bounded import Re2Use, assert_linear, on_re2
from _reliability_support import DEMO_POLICY

from extauthz import InvalidPolicy
from extauthz.policy import load_policy

HEADER = 'policyVersion: "0.1"\n'
ROUTE = "routes:\n  - id: r\n    match: {method: POST, path: /x}\n"


def _refuse(path: Path) -> InvalidPolicy:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(path)
    for problem in info.value.errors:
        assert problem.file == str(path)
        assert problem.reason
    return info.value


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _reasons(exc: InvalidPolicy) -> str:
    return "\n".join(str(p) for p in exc.errors)


def test_billion_laughs_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, 10):
        refs = ", ".join([f"*lol{i - 1}"] * 10)
        lines.append(f"lol{i}: &lol{i} [{refs}]")
    text = HEADER + "\n".join(lines) + "\n" + ROUTE
    exc = _refuse(_write(tmp_path, text))
    assert "anchors" in _reasons(exc) or "aliases" in _reasons(exc), _reasons(exc)


def test_a_single_alias_or_merge_key_is_refused(tmp_path: Path) -> None:
    text = HEADER + "x: &base {mode: enforce}\ndefaults:\n  <<: *base\n" + ROUTE
    exc = _refuse(_write(tmp_path, text))
    assert "line" in _reasons(exc)  # where in the file


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("1", "int"),
        ("on", "bool"),
        ("null", "NoneType"),
        ("[a, b]", "list"),
        ("2001-01-01", "date"),
    ],
)
def test_non_string_keys_are_refused(tmp_path: Path, key: str, shown: str) -> None:
    text = (
        HEADER + ROUTE + f"    {key}: x\n"
        if not key.startswith("[")
        else HEADER + f"? {key}\n: x\n" + ROUTE
    )
    exc = _refuse(_write(tmp_path, text))
    assert "keys must be strings" in _reasons(exc), _reasons(exc)


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = HEADER + f'name: !!python/object/apply:os.system ["touch {marker}"]\n' + ROUTE
    exc = _refuse(_write(tmp_path, text))
    assert not marker.exists()
    assert "invalid YAML" in _reasons(exc), _reasons(exc)


def test_unknown_fields_are_each_reported_with_their_path(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        policyVersion: "0.1"
        polcy: typo
        defaults:
          mode: enforce
          limit: {maxBodyBytes: 10}
        routes:
          - id: r
            match: {method: POST, path: /x, host: evil}
            vulnerabilty: {ssrfInternal: true}
        """
    )
    exc = _refuse(_write(tmp_path, text))
    paths = {p.path for p in exc.errors}
    assert {"polcy", "defaults.limit", "routes[0].match.host", "routes[0].vulnerabilty"} <= paths, (
        paths
    )


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = HEADER + "defaults:\n  mode: monitor\n  mode: enforce\n" + ROUTE
    assert "duplicate key" in _reasons(_refuse(_write(tmp_path, text)))


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write(HEADER + ROUTE + "description: '")
        f.write("x" * (5 * 1024 * 1024))
        f.write("'\n")
    exc = _refuse(path)
    assert "larger than" in _reasons(exc)


def test_many_routes_within_the_size_limit_load_in_bounded_time(tmp_path: Path) -> None:
    """A big but valid policy (2,000 routes) loads; cost is linear, not quadratic (counted)."""

    def policy_file(n: int) -> Path:
        routes = "".join(
            f"  - id: r{i}\n    match: {{method: GET, path: '/api/v{i}/items/{{id}}'}}\n"
            for i in range(n)
        )
        return _write(tmp_path, HEADER + "routes:\n" + routes, f"routes-{n}.yaml")

    assert_linear(load_policy, policy_file, 100, "routes")
    policy = load_policy(policy_file(2000))
    assert len(policy.route_ids) == 2000


@pytest.mark.parametrize("kind", ["yaml-flow", "yaml-block", "json"])
def test_deeply_nested_documents_are_refused(tmp_path: Path, kind: str) -> None:
    n = 100_000
    if kind == "yaml-flow":
        text = HEADER + ROUTE + "description: " + "[" * n + "]" * n + "\n"
        name = "deep.yaml"
    elif kind == "yaml-block":
        # 1,000 levels: deep, and still under the size limit (3,000 took 9 MB, refused by size)
        text = HEADER + ROUTE + "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "x: 1\n"
        name = "deep.yaml"
    else:
        text = '{"policyVersion": "0.1", "x": ' + "[" * n + "]" * n + "}"
        name = "deep.json"
    exc = _refuse(_write(tmp_path, text, name))
    assert "nested too deeply" in _reasons(exc), _reasons(exc)  # the depth limit stopped it


def test_invalid_utf8_and_binary_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\x00\xff\xfe" + bytes(range(256)) * 100)
    assert "UTF-8" in _reasons(_refuse(path))


def test_garbage_and_empty_files_are_refused(tmp_path: Path) -> None:
    for text in ("", "---\n", "just a string\n", "[1, 2, 3]\n", "{{{{", ":\n:\n", "\t- a"):
        exc = _refuse(_write(tmp_path, text))
        assert exc.errors


def test_a_remote_schema_ref_is_refused(tmp_path: Path) -> None:
    schema = {"$ref": "https://evil.example/schema.json"}
    text = HEADER + ROUTE + f"    contract: {{requestSchema: {json.dumps(schema)}}}\n"
    exc = _refuse(_write(tmp_path, text))
    assert any(p.path == "routes[0].contract.requestSchema" for p in exc.errors), _reasons(exc)
    assert "only local references" in _reasons(exc)


def test_an_invalid_schema_regex_is_refused(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}
    text = HEADER + ROUTE + f"    contract: {{requestSchema: {json.dumps(schema)}}}\n"
    exc = _refuse(_write(tmp_path, text))
    assert any(p.path.startswith("routes[0].contract") for p in exc.errors), _reasons(exc)


# Schema regexes run on RE2 (linear time, D7/D7b): a backtracking-prone pattern is accepted and
# a hostile value is decided fast with the right answer. Each value takes Python's ``re``
# from seconds to hours on its pattern. ``where`` puts the value in a property or in a key.
HOSTILE_SCHEMA_REGEXES = [
    ("nested-plus", {"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}},
     "name", "a" * 100_000 + "!"),
    ("alternation-star", {"patternProperties": {"^(a|a)*$": {"type": "integer"}}},
     "key", "a" * 100_000 + "!"),
    ("email-like", {"properties": {"e": {"type": "string", "pattern": "^([a-z0-9]+)*@x$"}}},
     "e", "a" * 100_000 + "!"),
    ("unanchored-quadratic", {"properties": {"e": {"type": "string", "pattern": "[a-z]+@"}}},
     "e", "a" * 100_000),
]  # fmt: skip


def _decide_value(
    tmp_path: Path,
    schema: dict,  # type: ignore[type-arg]
    where: str,
    value: str,
    during: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> str:
    """Load a policy with ``schema`` (accepted), then decide ``value`` inside ``during()``."""
    from extauthz.context import Body, HttpRequest, RequestContext
    from extauthz.engine import evaluate

    full = {"type": "object", **schema}
    text = HEADER + ROUTE + f"    contract: {{requestSchema: {json.dumps(full)}}}\n"
    policy = load_policy(_write(tmp_path, text))
    body = {value: "not an integer"} if where == "key" else {where: value}
    raw = json.dumps(body).encode()
    request = HttpRequest(
        "POST", "/x", {}, content_type="application/json", body=Body(True, len(raw), raw=raw)
    )
    with during():
        decision = evaluate(policy, RequestContext(request=request))
    return ",".join(decision.rule_ids) or decision.action


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("schema", "where", "value"),
    [case[1:] for case in HOSTILE_SCHEMA_REGEXES],
    ids=[case[0] for case in HOSTILE_SCHEMA_REGEXES],
)
def test_catastrophic_schema_regex_is_accepted_and_decided_on_re2(
    tmp_path: Path,
    schema: dict,  # type: ignore[type-arg]
    where: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Re2Use()
    hits = _decide_value(tmp_path, schema, where, value, lambda: on_re2(monkeypatch, seen))
    (pattern,) = [
        *(p["pattern"] for p in schema.get("properties", {}).values()),
        *schema.get("patternProperties", {}),
    ]
    seen.assert_only_on_re2(pattern)  # never on Python's re, where the value takes hours
    if where == "key":  # the key does not match the pattern, so its value is not checked
        assert hits == "ALLOW"
    else:
        assert hits == "contract.schema.invalid"
    benign = "aaaa" if where in ("name", "key") else "abc@x"
    expected = "contract.schema.invalid" if where == "key" else "ALLOW"
    assert _decide_value(tmp_path, schema, where, benign) == expected


def test_schema_regex_re2_cannot_run_is_refused(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"p": {"type": "string", "pattern": "^(?!admin)"}}}
    text = HEADER + ROUTE + f"    contract: {{requestSchema: {json.dumps(schema)}}}\n"
    exc = _refuse(_write(tmp_path, text))
    ((problem,),) = [exc.errors]
    assert problem.path == "routes[0].contract.requestSchema"
    assert "at '/properties/p/pattern'" in problem.reason
    assert "linear-time regex engine does not support (lookaround/backreference)" in problem.reason


# Shapes the former load-time heuristic (regex_risk) missed, with a value that makes each one
# blow up on a backtracking engine: exponential through a common prefix, and polynomial
# (cubic) through adjacent quantifiers over the same characters: 30 s to hours each. D7b,
# fixed by running schema regexes on RE2.
RESIDUAL_REGEXES = {
    "prefix-alternation": (r"^(a|aa)+$", "a" * 46 + "!"),
    "cubic-adjacent-stars": (r"^a*a*a*$", "a" * 8_000 + "!"),
    "cubic-dot-stars": (r"^.*.*.*=.*$", "x" * 20_000),
}
_RESIDUAL_CHILD = """
import json, sys
from extauthz.context import Body, HttpRequest, RequestContext
from extauthz.engine import evaluate
from extauthz.policy import load_policy_text
from extauthz import InvalidPolicy
for name, (pattern, value) in json.loads(sys.argv[1]).items():
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern}}}
    text = ('policyVersion: "0.1"\\nroutes:\\n  - id: r\\n    match: {method: POST, path: /x}\\n'
            '    contract: {requestSchema: ' + json.dumps(schema) + '}\\n')
    try:
        policy = load_policy_text(text)
    except InvalidPolicy:
        print(name, "refused", flush=True)
        continue
    raw = json.dumps({"v": value}).encode()
    request = HttpRequest("POST", "/x", {}, content_type="application/json",
                          body=Body(True, len(raw), raw=raw))
    evaluate(policy, RequestContext(request=request))
    print(name, "decided", flush=True)
"""
# A hang guard, not a speed bound: start-up plus milliseconds when safe (RE2); each value is
# sized so that a backtracking engine needs hours, so any answer at all proves the point.
RESIDUAL_GUARD_S = 60.0


def test_residual_regex_shapes_are_refused_or_decided() -> None:
    """Approach-neutral: refuse the pattern at load, or decide a hostile value at all."""
    children = {
        name: subprocess.Popen(
            [sys.executable, "-c", _RESIDUAL_CHILD, json.dumps({name: case})],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, case in RESIDUAL_REGEXES.items()
    }
    verdicts: dict[str, str] = {}
    for name, child in children.items():
        try:
            out, _ = child.communicate(timeout=RESIDUAL_GUARD_S)
            verdicts[name] = out.strip().partition(" ")[2] or out.strip()
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            verdicts[name] = f"no answer within {RESIDUAL_GUARD_S:.0f} s (backtracking)"
    bad = {name: v for name, v in verdicts.items() if v not in ("refused", "decided")}
    assert not bad, bad


@pytest.mark.timeout(60)
def test_cel_matches_uses_a_linear_time_regex_engine(tmp_path: Path) -> None:
    """CEL's matches() runs on the Rust regex crate (no backtracking): no blow-up, no refusal.

    Not timed: on a backtracking engine this value never finishes, so the pytest timeout (a
    hang guard) is what would fail.
    """
    from extauthz.context import HttpRequest, RequestContext
    from extauthz.engine import evaluate

    text = HEADER + textwrap.dedent(
        """\
        routes:
          - id: r
            match: {method: GET, path: /x}
            rules:
              - id: name.ok
                type: cel
                config: {expr: 'request.path.matches("^/(a+)+$")'}
        """
    )
    policy = load_policy(_write(tmp_path, text))
    path = "/" + "a" * 100_000 + "!"
    decision = evaluate(policy, RequestContext(request=HttpRequest("GET", path)))
    assert decision.action == "ALLOW" or "name.ok" in decision.rule_ids


def _policy_check(path: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "expr",
    [
        "1+" * 50_000 + "1 > 0",  # crashed the CEL parser (SIGSEGV) before the length limit
        "(" * 100_000 + "true" + ")" * 100_000,
        " && ".join(["true"] * 30_000),
    ],
    ids=["50k-operators", "100k-parentheses", "30k-conjunction"],
)
def test_cel_expression_bombs_are_refused_without_crashing(tmp_path: Path, expr: str) -> None:
    text = (
        HEADER
        + ROUTE
        + (
            "    rules:\n      - id: bomb\n        type: cel\n"
            f"        config: {{expr: {json.dumps(expr)}}}\n"
        )
    )
    path = _write(tmp_path, text)
    result = _policy_check(path)  # its 60 s timeout is a hang guard
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])  # not -11 (SIGSEGV)
    assert f"{path}: routes[0].rules[0].config.expr:" in result.stderr, result.stderr[-2000:]


def test_policy_check_names_file_path_and_reason(tmp_path: Path) -> None:
    text = HEADER + "routes:\n  - id: r\n    match: {method: POST, path: '/x/{a}/{a}'}\n"
    result = _policy_check(_write(tmp_path, text))
    assert result.returncode == 1
    assert (
        f"{tmp_path / 'policy.yaml'}: routes[0].match.path: invalid path pattern" in result.stderr
    )


def test_the_demo_policy_still_loads() -> None:
    assert load_policy(DEMO_POLICY).route_ids
