"""Security properties of the running PDP: socket permissions, bind addresses, secrets that never
leak, constant-time signature checks, and detectors that stay linear on hostile strings.
"""

from __future__ import annotations

import ast
import hmac
import http.client
import inspect
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from _bounded import assert_linear
from _reliability_support import (
    ACTIVATE,
    CATALOGUE_POLICY,
    DEMO_POLICY,
    GOOD_ACTIVATION,
    check_request,
    github_signature,
    mint_jwt,
    running_stack,
    send,
    stripe_signature,
    wait_until,
)
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

import extauthz
from extauthz import webhooks
from extauthz.context import Body, HttpRequest, Identity, RequestContext
from extauthz.devstack import free_port
from extauthz.engine import InMemoryReplayStore, canonical, evaluate, ssrf, vulnerability
from extauthz.engine import body as body_mod
from extauthz.envoy import check_request_to_context
from extauthz.envoyconfig import DEMO_JWT_SECRET
from extauthz.policy import load_policy, load_policy_text

PACKAGE_DIR = Path(extauthz.__file__).resolve().parent
STRIPE_SECRET = "whsec_demo_contractshield"
GITHUB_SECRET = "github_demo_contractshield"

# --- the Unix socket's mode and the HTTP bind address -------------------------------------------


def test_socket_mode_defaults_to_0660(start_server, socket_path: str) -> None:  # type: ignore[no-untyped-def]
    start_server(unix_socket_path=socket_path)
    st = os.stat(socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


@pytest.mark.parametrize(("how", "mode"), [("flag", 0o600), ("env", 0o640)])
def test_socket_mode_is_configurable(start_server, socket_path: str, how: str, mode: int) -> None:  # type: ignore[no-untyped-def]
    if how == "flag":
        start_server(unix_socket_path=socket_path, extra_args=["--socket-mode", f"{mode:o}"])
    else:
        start_server(unix_socket_path=socket_path, env={"SOCKET_MODE": f"0{mode:o}"})
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == mode


def _listeners(port: int) -> set[str]:
    """Local addresses in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            if width == 8:
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr_hex))))
            else:
                found.add("::" if int(addr_hex, 16) == 0 else f"v6:{addr_hex}")
    return found


def test_http_port_binds_loopback_by_default(start_server, socket_path: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    start_server(unix_socket_path=socket_path, http_port=port)
    assert _listeners(port) == {"127.0.0.1"}


def test_http_host_can_be_widened_explicitly(start_server, socket_path: str) -> None:  # type: ignore[no-untyped-def]
    """The check above can tell the difference: an explicit 0.0.0.0 shows up as such."""
    port = free_port()
    start_server(unix_socket_path=socket_path, http_port=port, env={"HTTP_HOST": "0.0.0.0"})
    assert "0.0.0.0" in _listeners(port)


# --- secrets never appear in logs, metrics, decisions or error bodies ------------------------------


def _secret_policy(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(DEMO_POLICY.parent, target)
    path = target / DEMO_POLICY.name
    route = (
        "  - id: env-webhook\n"
        "    match: {method: POST, path: /webhooks/env}\n"
        "    webhook: {provider: github, secretRef: CS_RELIABILITY_WEBHOOK_SECRET}\n"
    )
    path.write_text(path.read_text() + route)
    return path


def _http(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        reply = send(conn, method, path, body, {k.replace("_", "-"): v for k, v in headers.items()})
    finally:
        conn.close()
    return (
        f"{reply.status} {json.dumps(dict(reply.headers))} {reply.body.decode('utf-8', 'replace')}"
    )


def _get(url: str, data: bytes | None = None) -> str:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


def test_secrets_never_leak_into_logs_metrics_decisions_or_errors(tmp_path: Path) -> None:
    env_secret = "cs-env-secret-" + secrets.token_hex(12)
    token = mint_jwt("alice", "acme")
    bad_token = mint_jwt("mallory", "acme", secret=b"not-the-demo-key-" + secrets.token_bytes(8))
    policy = _secret_policy(tmp_path)
    env = {
        "CS_RELIABILITY_WEBHOOK_SECRET": env_secret,
        "LOG_LEVEL": "debug",
        "HOT_RELOAD": "true",
        "RELOAD_DEBOUNCE_MS": "100",
        # The decision log at its most talkative: every ALLOW too, and the bodies of the
        # webhook routes (whose requests carry the signatures).
        "DECISION_LOG_SAMPLE_ALLOW": "1",
        "DECISION_LOG_BODY_ROUTES": "stripe-webhook,github-webhook,env-webhook,license-activate",
        "DECISION_LOG_HEADERS": "user-agent,content-type,x-github-delivery",
    }
    seen: list[str] = []
    with running_stack(policy=policy, env=env) as stack:
        port = stack.port
        payload = json.dumps({"id": "evt_leak", "type": "invoice.paid"}).encode()
        gh = json.dumps({"action": "opened"}).encode()
        calls: list[tuple[str, str, bytes | None, dict[str, str]]] = [
            ("POST", ACTIVATE, json.dumps(GOOD_ACTIVATION).encode(),
             {"authorization": f"Bearer {token}", "content-type": "application/json"}),
            ("POST", ACTIVATE, json.dumps({**GOOD_ACTIVATION, "tenantId": "x"}).encode(),
             {"authorization": f"Bearer {token}", "content-type": "application/json"}),
            ("GET", "/api/v1/licenses/1", None, {"authorization": f"Bearer {bad_token}"}),
            ("POST", "/webhooks/stripe", payload,
             {"stripe-signature": stripe_signature(payload), "content-type": "application/json"}),
            ("POST", "/webhooks/stripe", payload,  # now a replay
             {"stripe-signature": stripe_signature(payload), "content-type": "application/json"}),
            ("POST", "/webhooks/stripe", payload,
             {"stripe-signature": stripe_signature(payload, secret=b"wrong"),
              "content-type": "application/json"}),
            ("POST", "/webhooks/github", gh,
             {"x-hub-signature-256": github_signature(gh), "x-github-delivery": "d-leak"}),
            ("POST", "/webhooks/env", gh,
             {"x-hub-signature-256": github_signature(gh, secret=env_secret.encode()),
              "x-github-delivery": "d-env"}),
            ("POST", "/webhooks/env", gh,
             {"x-hub-signature-256": "sha256=" + "0" * 64, "x-github-delivery": "d-env-bad"}),
        ]  # fmt: skip
        statuses = []
        for method, path, body, headers in calls:
            out = _http(port, method, path, body, **headers)
            statuses.append(int(out.split(" ", 1)[0]))
            seen.append(out)
        assert statuses == [200, 403, 401, 200, 403, 403, 200, 200, 403], statuses
        # The PDP itself, directly: a token in a header it can see, and the HTTP API.
        with grpc.insecure_channel(f"unix:{stack.socket_path}") as channel:
            check = channel.unary_unary(
                "/envoy.service.auth.v3.Authorization/Check",
                request_serializer=lambda b: b,
                response_deserializer=CheckResponse.FromString,
            )
            for headers in (
                {"authorization": f"Bearer {token}"},
                {"authorization": f"Bearer {token}", "x-hub-signature-256": "sha256=00"},
            ):
                resp = check(
                    check_request(
                        "POST", "/webhooks/env", headers=headers, body=gh
                    ).SerializeToString()
                )
                seen.append(str(resp))
        ctx = {
            "request": {"method": "POST", "path": "/webhooks/env",
                        "headers": {"authorization": f"Bearer {token}"},
                        "body": {"present": True, "sizeBytes": 2, "json": {"sample": {}}}},
        }  # fmt: skip
        seen.append(_get(f"{stack.server.http_url}/v1/evaluate", json.dumps(ctx).encode()))
        seen.append(_get(f"{stack.server.http_url}/v1/evaluate", b'{"request": ' + token.encode()))
        # A bad edit that carries the secret (mistyped) is refused without repeating it.
        text = policy.read_text()
        policy.write_text(text.replace(f"secret: {STRIPE_SECRET}", f"secret: [{STRIPE_SECRET}]"))
        assert wait_until(
            lambda: (
                json.loads(_get(f"{stack.server.http_url}/health"))["checks"]["policy"][
                    "lastReloadError"
                ]
                is not None
            ),
            10.0,
        )
        policy.write_text(text.replace(
            "secretRef: CS_RELIABILITY_WEBHOOK_SECRET", f"secretRef: '{env_secret} x'"
        ))  # fmt: skip
        time.sleep(0.8)
        for endpoint in ("/health", "/ready", "/metrics", "/live"):
            seen.append(_get(f"{stack.server.http_url}{endpoint}"))
        log = stack.server.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the scan below covers the most verbose level
    records = [json.loads(ln) for ln in log.splitlines() if '"log":"contractshield.decision"' in ln]
    # Every decision was logged and is scanned below: 8 through Envoy (the bad JWT stops at
    # Envoy's jwt_authn, 401), 2 straight over gRPC, 1 through the HTTP API.
    assert len(records) == len(calls) - 1 + 2 + 1
    assert any(r["request"] and "body" in r["request"] for r in records)
    assert "(value not shown)" in log  # both bad edits were refused, and logged, redacted
    haystack = "\n".join([log, *seen])
    needles = {
        "stripe secret": STRIPE_SECRET,
        "github secret": GITHUB_SECRET,
        "secretRef value": env_secret,
        "JWT": token,
        "JWT signature": token.rsplit(".", 1)[1],
        "bad JWT signature": bad_token.rsplit(".", 1)[1],
        "JWT key": DEMO_JWT_SECRET.decode(),
    }
    leaks = {name: haystack.count(value) for name, value in needles.items() if value in haystack}
    assert not leaks, leaks
    # The signatures the requests carried: the echo upstream returns them to their sender, but
    # the PDP's own output (its log, the decision log included) never holds one.
    signatures = [v for *_, headers in calls for k, v in headers.items() if "signature" in k]
    assert len(signatures) == 6
    assert not [v for v in signatures if v in log or v.split("v1=")[-1] in log]


# --- HMAC comparisons are constant-time ---------------------------------------------------------

# Names that hold a signature, a MAC or a secret. (Our own random replay-claim token in
# replay_redis is compared with what Redis stored: no attacker-controlled timing there.)
_SIGNATURE_NAMES = re.compile(r"sig|digest|hmac|^mac$|secret", re.I)


def _names(node: ast.AST) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            out.add(sub.func.id)
    return out


def test_no_equality_operator_compares_signatures_anywhere_in_the_package() -> None:
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) for o in operands):
                continue  # comparing with a literal ('sha256', "") is not a secret comparison
            names = set().union(*(_names(o) for o in operands))
            if any(_SIGNATURE_NAMES.search(n) for n in names):
                offenders.append(
                    f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}: {ast.unparse(node)}"
                )
    assert not offenders, offenders


def test_every_webhook_provider_compares_with_hmac_compare_digest() -> None:
    for provider in webhooks.providers():
        module = sys.modules[type(provider).__module__]
        assert "hmac.compare_digest(" in inspect.getsource(module), provider.name
        assert module.hmac is hmac  # the spy below patches the one every provider calls


SLACK_TWILIO = """
policyVersion: "0.1"
routes:
  - id: slack
    match: {method: POST, path: /slack}
    webhook: {provider: slack, secret: slack-secret, replayProtection: false}
  - id: twilio
    match: {method: POST, path: /twilio}
    webhook: {provider: twilio, secret: twilio-secret, replayProtection: false}
"""


def test_every_provider_verifies_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    demo = load_policy(DEMO_POLICY)
    other = load_policy_text(SLACK_TWILIO)
    now = int(time.time())
    payload = b'{"id":"evt_spy","type":"invoice.paid"}'
    form = b"MessageSid=SM1&Body=hi"
    pairs = [("MessageSid", "SM1"), ("Body", "hi")]
    url = "https://api.example/twilio"
    cases: list[tuple[Any, str, bytes, dict[str, str], bool]] = [
        (demo, "/webhooks/stripe", payload, {"stripe-signature": stripe_signature(payload)}, True),
        (demo, "/webhooks/stripe", payload, {"stripe-signature": f"t={now},v1={'0' * 64}"}, False),
        (demo, "/webhooks/stripe", payload, {"stripe-signature": f"t={now},v1=00"}, False),
        (demo, "/webhooks/github", payload, {"x-hub-signature-256": github_signature(payload)}, True),
        (demo, "/webhooks/github", payload, {"x-hub-signature-256": "sha256=abc"}, False),
        (other, "/slack", payload, webhooks.sign("slack", "slack-secret", payload, timestamp=now), True),
        (other, "/slack", payload, {"x-slack-signature": "v0=00", "x-slack-request-timestamp": str(now)}, False),
        (other, "/twilio", form,
         webhooks.sign("twilio", "twilio-secret", form, timestamp=now, url=url, form_pairs=pairs), True),
        (other, "/twilio", form, {"x-twilio-signature": "AAAA"}, False),
    ]  # fmt: skip
    for policy, path, body, headers, valid in cases:
        calls.clear()
        ctype = "application/x-www-form-urlencoded" if path == "/twilio" else "application/json"
        req = check_request(
            "POST", path, headers={**headers, "content-type": ctype}, body=body, host="api.example"
        )
        req.attributes.request.http.scheme = "https"
        decision = evaluate(
            policy, check_request_to_context(req), replay_store=InMemoryReplayStore()
        )
        assert calls, f"{path}: no compare_digest call"
        assert decision.allowed is valid, (path, decision.reason)
        # The attacker-supplied signature is one of the compared values.
        given = next(iter(headers.values()))
        assert any(str(b) in given or str(a) in given for a, b in calls), (path, calls, given)


# --- no detector backtracks catastrophically on attacker input ----------------------------------

N = 100_000  # characters per hostile string
# Not timed: each detector's and the engine's work is counted and must grow linearly (n to 4n,
# ``_bounded.assert_linear``); the detector regexes' shapes are checked in tests/engine. The
# full-size strings must still be decided. Figures: ``bench/hostile_bench.py``.
LINEAR_N = 2_000


def _hostile(n: int) -> dict[str, str]:
    """Hostile strings of about ``n`` characters each."""
    return {
        "dots": "." * n,
        "dot-dot-no-sep": ".." * (n // 2),
        "slashes": "/" * n,
        "backslashes": "\\" * n,
        "percent": "%" * n,
        "percent-25": "%25" * (n // 3),
        "percent-2e-no-sep": "%2e" * (n // 3),
        "overlong-prefix": "%c0" * (n // 3),
        "semicolons": ";" * n,
        "sep-spaces": ";" + " " * n,
        "sep-word-spaces": "; cat" + " \t" * (n // 2) + "x",
        "many-sep-words": "; cat x" * (n // 7),
        "dollar-paren": "$(" * (n // 2),
        "dollar-brace": "${" * (n // 2),
        "backticks": "`" * n,
        "backtick-command": "`sh" + "a" * n,
        "redirect": "> /" * (n // 3),
        "brackets": "[" * n,
        "bracket-dollar": "[$" + "a" * n,
        "bracket-spaces": "[" + " " * n + "$ne",
        "brace-dollar": "{$" + "a" * n,
        "comma-dollar": ",$a" * (n // 3),
        "quotes": '"' * n,
        "escaped-quotes": '"' + "\\" * n,
        "escaped-quote-pairs": '"' + '\\"' * (n // 2),  # was quadratic in the JSON depth pre-scan
        "unterminated": '"' + "a" * n,
        "proto": "__proto__" * (n // 9),
        "constructor": "constructor" * (n // 11),
        "scheme-slashes": "http:" + "/" * n,
        "scheme-backslashes": "http:" + "\\" * n,
        "url-at": "http://" + "@" * n,
        "url-brackets": "http://[" + ":" * n,
        "url-dots": "http://" + "1." * (n // 2),
        "url-digits": "http://" + "9" * n,
        "url-percent": "http://" + "%31" * (n // 3),
        "nip": "http://" + "1-" * (n // 2) + ".nip.io",
        "octal": "0" * n,
        "hex-host": "0x" + "f" * n,
        "unicode": "\uff0e" * n,
        "enclosed": "\u2460" * n,
        "nul": "\x00" * n,
        "newlines": "\n" * n,
        "mixed": "a;b|c&d`e$f(g{h[i]j}k" * (n // 20),
    }


HOSTILE = _hostile(N)


def _detectors() -> dict[str, Callable[[str], Any]]:
    return {
        "canonicalize": lambda s: canonical.canonicalize("/" + s),
        "traversal": vulnerability.traversal_reason,
        "command": vulnerability.command_reason,
        "nosql_key": vulnerability.nosql_key_reason,
        "nosql_value": vulnerability.nosql_value_reason,
        "proto_key": lambda s: vulnerability.proto_key_reason(s, {"prototype": 1}),
        "ssrf_url": lambda s: ssrf.ssrf_reason(s, bare_host=False),
        "ssrf_host": lambda s: ssrf.ssrf_reason(s, bare_host=True),
        "host": ssrf.host_reason,
        "parse_ip": ssrf.parse_ip,
        "json_depth": lambda s: body_mod.json_depth(s.encode("utf-8", "surrogatepass")),
        "media_type": body_mod.media_type,
    }


@pytest.mark.parametrize("detector", sorted(_detectors()))
def test_detectors_are_linear_on_hostile_strings(detector: str) -> None:
    fn = _detectors()[detector]
    for name in HOSTILE:
        assert_linear(fn, lambda n, name=name: _hostile(n)[name], LINEAR_N, f"{detector} {name}")
        fn(HOSTILE[name])  # and the full-size one is decided


def _decide_all(where: str, value: str, policies: list[Any]) -> list[str]:
    """Every detector at once, through the pipeline: ``value`` in ``where``, three requests."""
    identity = Identity(True, "alice", "acme", (), {"sub": "alice"})
    query: dict[str, str] = {}
    path = "/api/v1/search"
    body = Body()
    ctype = "application/json"
    if where == "body":
        raw = json.dumps({"q": value, value[:1000]: 1, "callbackUrl": value}).encode()
        body = Body(True, len(raw), raw=raw)
    elif where == "query":
        query = {"q": value, value[:2000]: "x"}
        path = "/api/v1/items/1"
    elif where == "path":
        path = "/api/v1/items/" + value
    else:
        raw = ("q=" + value.replace("&", "") + "&" + value[:1000] + "=1").encode()
        body = Body(True, len(raw), raw=raw)
        ctype = "application/x-www-form-urlencoded"
    reasons = []
    for policy in policies:
        for method, p in (("POST", path), ("POST", ACTIVATE), ("GET", path)):
            request = HttpRequest(method, p, {"content-type": ctype}, query, ctype, body=body)
            decision = evaluate(policy, RequestContext(request=request, identity=identity))
            assert "engine.internalError" not in decision.rule_ids, decision.reason
            reasons.append(decision.reason)
    return reasons


@pytest.mark.parametrize("where", ["body", "query", "path", "form"])
def test_whole_engine_stays_linear_on_hostile_strings(where: str) -> None:
    """Every detector at once, through the pipeline, on both test policies."""
    policies = [load_policy(DEMO_POLICY), load_policy(CATALOGUE_POLICY)]
    for name, value in HOSTILE.items():
        assert_linear(
            lambda v: _decide_all(where, v, policies),
            lambda n, name=name: _hostile(n)[name],
            LINEAR_N,
            f"{where} {name}",
        )
        _decide_all(where, value, policies)  # full size: decided, no internal error
