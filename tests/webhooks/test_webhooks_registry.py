"""The webhook provider registry: one file per provider, and everything else reads the registry.

The proof that a provider is one file: a throw-away provider defined here (``Acme``) is
registered in a fresh interpreter before the product's modules are imported, and the policy
schema, the compiler, the engine, ``extauthz test``'s cases, the client's cache bypass and the
decision log's never-logged headers all know it; the same probe without it is the control.

Only the standard library and ``extauthz.webhooks`` are imported at the top: the probe imports
this module in an interpreter where nothing else may be imported before ``Acme`` is registered.
"""

from __future__ import annotations

import ast
import hmac
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import extauthz
from extauthz import webhooks
from extauthz.webhooks import (
    Delivery,
    Outcome,
    Outgoing,
    Provider,
    Verified,
    hmac_hex,
    is_timestamp,
    outside_tolerance,
)

PACKAGE = Path(extauthz.__file__).resolve().parent
# Modules that may name providers for their own purposes: the demo and the dev stack.
ASIDE = ("demo", "devstack")
NOW = 1_767_225_600
ACME_SECRET = "acme-secret"


class Acme(Provider):
    """Signs ``<t>.<body>`` (HMAC-SHA256) in ``x-acme-signature: t=<t>,h=<hex>``; the event
    type is the body's ``kind``."""

    name = "acme"
    signature_header = "x-acme-signature"
    secret_env = "ACME_WEBHOOK_SECRET"
    timestamped = True
    bypass_headers = ("x-acme-delivery",)

    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        fields = dict(item.partition("=")[::2] for item in delivery.signature.split(","))
        ts, sig = fields.get("t"), fields.get("h", "")
        if ts is None or not is_timestamp(ts):
            return "missing or invalid acme timestamp"
        if not hmac.compare_digest(hmac_hex(secret, ts.encode() + b"." + delivery.payload), sig):
            return "signature does not match"
        late = outside_tolerance(ts, now, tolerance)
        return late or Verified(delivery, sig, ts, delivery.json_field("kind"))

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        sig = hmac_hex(secret, str(out.timestamp).encode() + b"." + out.raw)
        return {self.signature_header: f"t={out.timestamp},h={sig}"}


ACME_POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: acme
    match: {method: POST, path: /hooks/acme}
    webhook: {provider: acme, allowedEventTypes: [order.paid]}
"""


def _probe() -> dict[str, Any]:
    """What every reader of the registry makes of provider ``acme`` (run in a fresh interpreter)."""
    import os

    os.environ["ACME_WEBHOOK_SECRET"] = ACME_SECRET
    from extauthz import InvalidConfig, InvalidPolicy
    from extauthz.client import DEFAULT_CACHE_BYPASS_HEADERS
    from extauthz.client._cache import DecisionCache
    from extauthz.client._request import describe
    from extauthz.context import RequestContext
    from extauthz.engine import InMemoryReplayStore, evaluate
    from extauthz.policy import load_policy_text
    from extauthz.policy._cases import Case, run_case
    from extauthz.policy._schema import structure_problems
    from extauthz.server.decision_log import parse_headers

    out: dict[str, Any] = {"registered": list(webhooks.names())}

    def route(webhook: dict[str, Any], **more: Any) -> dict[str, Any]:
        r = {"id": "a", "match": {"path": "/a"}, "webhook": webhook, **more}
        return {"policyVersion": "0.1", "routes": [r]}

    def problems(text: str) -> list[str]:
        try:
            load_policy_text(text)
        except InvalidPolicy as exc:
            return [p.reason for p in exc.errors]
        return []

    out["schema"] = [p.reason for p in structure_problems(route({"provider": "acme"}), "")]
    out["schema_enum"] = [p.reason for p in structure_problems(route({"provider": "?"}), "")]
    out["compile"] = problems(ACME_POLICY)
    out["compile_header"] = problems(ACME_POLICY.replace("order.paid]", "order.paid], header: x"))
    out["compile_builtin_id"] = problems(
        ACME_POLICY + "    rules: [{id: webhook.acme.replay, type: cel, config: {expr: 'true'}}]\n"
    )
    out["bypass"] = sorted(h for h in DEFAULT_CACHE_BYPASS_HEADERS if "acme" in h)
    cache = DecisionCache(max_size=8, ttl_seconds=60, ignored_headers=frozenset())
    inp = describe("POST", "/hooks/acme", headers={"X-Acme-Delivery": "d-1"}, body=b"{}")
    out["cache_key"] = cache.key(inp, "v1") is not None
    try:
        parse_headers("user-agent,x-acme-delivery")
        out["log_header"] = "allowed"
    except InvalidConfig as exc:
        out["log_header"] = str(exc)
    if out["compile"]:
        return out
    policy = load_policy_text(ACME_POLICY)
    out["replay_ttl"] = policy.routes[0].webhook.replay_ttl

    def context(body: bytes, headers: dict[str, str]) -> RequestContext:
        request = {"method": "POST", "path": "/hooks/acme", "contentType": "application/json"}
        request["headers"] = headers
        request["body"] = {"present": True, "raw": body.decode()}
        return RequestContext.from_dict({"request": request})

    body = b'{"kind":"order.paid"}'
    signed = webhooks.sign("acme", ACME_SECRET, body, timestamp=NOW)
    store = InMemoryReplayStore()
    out["engine"] = [
        list(evaluate(policy, context(b, h), replay_store=store, now=NOW).rule_ids)
        for b, h in (
            (body, signed),
            (body, signed),  # the same delivery again
            (body + b" ", signed),
            (b'{"kind":"x"}', webhooks.sign("acme", ACME_SECRET, b'{"kind":"x"}', timestamp=NOW)),
        )
    ]
    case = Case(
        name="signed at run time",
        context=context(body, {}).to_dict(),
        expect={"action": "ALLOW"},
        sign={"provider": "acme", "secret": ACME_SECRET, "timestamp": "now"},
        repeat=1,
    )
    out["case"] = run_case(policy, case, NOW)
    return out


def _run_probe(register: bool) -> dict[str, Any]:
    code = f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_webhooks_registry as t
        from extauthz import webhooks
        assert not any(m.startswith(("extauthz.policy", "extauthz.client", "extauthz.server",
                                     "extauthz.engine")) for m in sys.modules), "imported too early"
        if {register!r}:
            webhooks.register(t.Acme())
        print(json.dumps(t._probe()))
        """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_a_provider_registered_before_the_readers_is_known_to_all_of_them() -> None:
    got = _run_probe(register=True)
    assert got["registered"] == ["stripe", "github", "slack", "twilio", "acme"]
    assert got["schema"] == []
    assert "'twilio', 'acme', got '?'" in got["schema_enum"][0]
    assert got["compile"] == []  # the secret came from the provider's default variable
    assert got["compile_header"] == [
        "acme signatures are read from 'x-acme-signature'; another header is not supported"
    ]
    assert got["compile_builtin_id"] == [
        "'webhook.acme.replay' is the id of a built-in check; a CEL rule needs an id of its own"
    ]
    assert got["replay_ttl"] == 2 * 300 + 60  # it signs a timestamp
    assert got["engine"] == [
        [],
        ["webhook.acme.replay"],
        ["webhook.acme.signature"],
        ["webhook.acme.eventType"],
    ]
    assert got["case"] == []
    assert got["bypass"] == ["x-acme-delivery", "x-acme-signature"]
    assert got["cache_key"] is False  # a request carrying its delivery header is never cached
    assert "'x-acme-delivery' may carry a credential" in got["log_header"]


def test_without_it_every_reader_refuses_or_ignores_it() -> None:
    got = _run_probe(register=False)
    assert got["registered"] == ["stripe", "github", "slack", "twilio"]
    assert got["schema"] and "must be one of" in got["schema"][0]
    assert got["compile"]  # refused: unknown provider
    assert got["bypass"] == [] and got["cache_key"] is True
    assert got["log_header"] == "allowed"


# --- one file per provider ----------------------------------------------------------------


def test_every_public_module_of_the_package_is_one_registered_provider() -> None:
    folder = Path(webhooks.__file__).parent
    modules = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
    assert modules == sorted(webhooks.names())
    for provider in webhooks.providers():
        module = sys.modules[type(provider).__module__]
        assert module.__name__ == f"extauthz.webhooks.{provider.name}"
        assert module.PROVIDER is provider
    # the order users read in the schema's enum and its error message
    assert webhooks.names() == ("stripe", "github", "slack", "twilio")


def _code_without_docstrings(path: Path) -> str:
    """The module's source with its docstrings blanked: code and comments, not prose."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and first.end_lineno is not None
        ):
            for i in range(first.lineno - 1, first.end_lineno):
                lines[i] = ""
    return "\n".join(lines)


def test_every_provider_name_is_spelled_in_one_product_module() -> None:
    code = {
        path.relative_to(PACKAGE).as_posix(): _code_without_docstrings(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ASIDE
    }
    for name in webhooks.names():
        word = re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", re.I)
        where = [path for path, text in code.items() if word.search(text)]
        assert where == [f"webhooks/{name}.py"], name


# --- the registry's own rules -------------------------------------------------------------


def test_register_refuses_what_cannot_work() -> None:
    class Taken(Acme):
        name = "stripe"

    class BadName(Acme):
        name = "Acme Corp"

    class BadHeader(Acme):
        name = "acme2"
        signature_header = "X-Acme-Signature"

    for provider, message in (
        (Taken(), "already registered"),
        (BadName(), "must match"),
        (BadHeader(), "lower-case header"),
    ):
        with pytest.raises(ValueError, match=message):
            webhooks.register(provider)
    with pytest.raises(TypeError, match="not a webhook Provider"):
        webhooks.register(object())  # type: ignore[arg-type]
    assert webhooks.names() == ("stripe", "github", "slack", "twilio")


def test_a_provider_without_every_method_cannot_be_made() -> None:
    class Half(Provider):
        name = "half"
        signature_header = "x-half"
        secret_env = "HALF"

        def verify(self, secret: bytes, d: Delivery, now: float, tolerance: int) -> Outcome:
            return "never"

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]


def test_register_get_and_unregister() -> None:
    acme = Acme()
    assert webhooks.find("acme") is None
    with pytest.raises(ValueError, match="unknown webhook provider 'acme'"):
        webhooks.get("acme")
    try:
        assert webhooks.register(acme) is acme
        assert webhooks.get("acme") is acme and webhooks.names()[-1] == "acme"
        assert {"webhook.acme.signature", "webhook.acme.replayStoreUnavailable"} <= (
            webhooks.hit_ids()
        )
        assert "x-acme-delivery" in webhooks.cache_bypass_headers()
        # its header family, up to its name
        assert webhooks.never_logged_headers()[-1] == "x-acme-"
    finally:
        webhooks.unregister("acme")
    assert webhooks.find("acme") is None


def test_ids_and_replay_ttl_come_from_the_provider() -> None:
    acme = Acme()
    assert acme.hit_ids == (
        "webhook.acme.signature",
        "webhook.acme.eventType",
        "webhook.acme.replay",
        "webhook.acme.replayStoreUnavailable",
    )
    assert (acme.signature_id, acme.replay_id) == acme.hit_ids[::2]
    assert acme.replay_ttl(60) == 180
    assert repr(acme) == "<webhook provider 'acme'>"
    assert webhooks.get("github").replay_ttl(60) == webhooks.NO_TIMESTAMP_REPLAY_TTL


# --- what the built-in providers feed is what was written by hand before the registry ----------

# The lists as they stood in client/_cache.py and server/decision_log.py (f0b5545).
HAND_WRITTEN_BYPASS = {
    "stripe-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "svix-signature",
    "webhook-signature",
    "x-slack-signature",
    "x-shopify-hmac-sha256",
    "x-twilio-signature",
}
HAND_WRITTEN_NEVER_LOGGED = re.compile(
    r"authorization|cookie|token|secret|signature|password|passwd|api[-_]?key|credential"
    r"|^x-hub-signature|^stripe-|^x-slack-|^x-twilio-|jwt|session|^x-amz-security"
)


def test_the_derived_lists_are_the_hand_written_ones() -> None:
    from extauthz.client import DEFAULT_CACHE_BYPASS_HEADERS
    from extauthz.policy._compile import BUILTIN_IDS
    from extauthz.server.decision_log import _NEVER_HEADERS

    assert DEFAULT_CACHE_BYPASS_HEADERS == HAND_WRITTEN_BYPASS
    names = [
        *HAND_WRITTEN_BYPASS,
        *(p.header_family for p in webhooks.providers()),
        "x-slack-request-timestamp",
        "stripe-account",
        "x-twilio-email-event-webhook-signature",
        "i-twilio-idempotency-token",
        "x-github-event",
        "x-github-delivery",
        "x-hub",
        "slack",
        "x-stripe-signature",
        "user-agent",
        "content-type",
        "x-request-id",
    ]
    for name in names:
        expected = bool(HAND_WRITTEN_NEVER_LOGGED.search(name))
        assert bool(_NEVER_HEADERS.search(name)) is expected, name
    assert {
        f"webhook.{p}.{k}"
        for p in ("stripe", "github", "slack", "twilio")
        for k in ("signature", "eventType", "replay", "replayStoreUnavailable")
    } <= BUILTIN_IDS
