"""The scripted tour: real HTTP requests through Envoy, each with the status we expect.

A step is one request (built just before it is sent, so webhook timestamps are fresh) and the
status a user should see. The response tells us the decision: a denial carries
``x-contractshield-decision`` and a JSON body with ``ruleHits``; an allowed request reaches the
demo upstream, which echoes the ``x-contractshield-*`` headers Envoy added for it. HTTP is the
stdlib's ``http.client``: the tour must run wherever the PDP runs, with nothing extra.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .tokens import mint_jwt, stripe_signature

DECISION_HEADER = "x-contractshield-decision"
RELOAD_WAIT_SECONDS = 3.0
REQUEST_TIMEOUT_SECONDS = 5.0

ACTIVATE = "/api/v1/licenses/activate"
STRIPE = "/webhooks/stripe"


@dataclass(slots=True, frozen=True)
class Probe:
    """One HTTP request to send through Envoy."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(slots=True, frozen=True)
class Reply:
    status: int
    decision: str
    rule_hits: tuple[str, ...]
    body: bytes


@dataclass(slots=True, frozen=True)
class Step:
    """A tour step: ``prepare`` (if any) runs first, then ``probe`` is sent until it matches.

    ``wait_seconds`` > 0 retries the request until the expected status arrives or time runs out
    (a hot reload takes effect asynchronously).
    """

    label: str
    probe: Callable[[], Probe]
    expected: int
    prepare: Callable[[], str] | None = None  # returns a note for the table
    wait_seconds: float = 0.0


@dataclass(slots=True, frozen=True)
class StepResult:
    number: int
    label: str
    request: str
    expected: int
    status: int
    decision: str
    rule_hits: tuple[str, ...]
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == self.expected


def send(base_url: str, probe: Probe, *, timeout: float = REQUEST_TIMEOUT_SECONDS) -> Reply:
    """Send ``probe`` to ``base_url`` (``http://host:port``) and read the decision from the reply."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)
    try:
        headers = dict(probe.headers)
        if probe.body is not None:
            headers.setdefault("content-length", str(len(probe.body)))
        conn.request(probe.method, probe.path, body=probe.body, headers=headers)
        response = conn.getresponse()
        body = response.read()
        decision = response.getheader(DECISION_HEADER) or ""
        status = response.status
    finally:
        conn.close()
    return Reply(status, *_decision_from(decision, body), body)


def _decision_from(header: str, body: bytes) -> tuple[str, tuple[str, ...]]:
    """(decision, rule hits) from a denial body or the upstream's echo of our headers."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    hits: tuple[str, ...] = ()
    if isinstance(data, dict):
        if isinstance(data.get("ruleHits"), list):
            hits = tuple(str(h) for h in data["ruleHits"])
        echoed = data.get("headers")
        if not header and isinstance(echoed, dict):
            header = str(echoed.get(DECISION_HEADER, ""))
    return header or "-", hits


def run_tour(
    base_url: str,
    steps: Sequence[Step],
    *,
    on_result: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run every step in order (a failed step does not stop the tour); return the results."""
    results: list[StepResult] = []
    for number, step in enumerate(steps, start=1):
        note = step.prepare() if step.prepare is not None else ""
        probe = step.probe()
        deadline = time.monotonic() + step.wait_seconds
        started = time.monotonic()
        while True:
            try:
                reply = send(base_url, probe)
            except OSError as exc:
                reply = Reply(0, f"error: {exc.__class__.__name__}", (), b"")
            if reply.status == step.expected or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if step.wait_seconds:
            note = f"{note}; took {time.monotonic() - started:.1f}s".lstrip("; ")
        result = StepResult(
            number=number,
            label=step.label,
            request=f"{probe.method} {probe.path}",
            expected=step.expected,
            status=reply.status,
            decision=reply.decision,
            rule_hits=reply.rule_hits,
            note=note,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# --- the demo's steps ------------------------------------------------------------------------


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _activate(body: bytes, token: str | None) -> Callable[[], Probe]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers |= _bearer(token)
    return lambda: Probe("POST", ACTIVATE, headers, body)


def demo_steps(policy_file: Path | None) -> list[Step]:
    """The README tour; ``policy_file`` (a throw-away copy) enables the hot-reload steps."""
    alice = mint_jwt("alice", "acme", ("licenses:write",))
    admin = mint_jwt("root", "acme", ("admin",))
    clean = {"licenseKey": "ACME-0001-2345-6789", "deviceId": "device-42", "tenantId": "acme"}
    ssrf = clean | {"callbackUrl": "http://169.254.169.254/latest/meta-data/"}
    foreign = clean | {"tenantId": "globex"}

    # One Stripe event, signed once when first sent: step 7 replays the very same bytes.
    event = {
        "id": f"evt_demo_{uuid.uuid4().hex[:16]}",
        "type": "invoice.paid",
        "data": {"object": {"id": "in_demo", "amount_paid": 4200}},
    }
    payload = _json(event)
    signed: list[Probe] = []

    def stripe_valid() -> Probe:
        if not signed:
            headers = {
                "content-type": "application/json",
                "stripe-signature": stripe_signature(payload),
            }
            signed.append(Probe("POST", STRIPE, headers, payload))
        return signed[0]

    def stripe_forged() -> Probe:
        other = _json(event | {"id": f"evt_demo_{uuid.uuid4().hex[:16]}"})
        headers = {
            "content-type": "application/json",
            "stripe-signature": stripe_signature(other, secret=b"whsec_attacker_guess"),
        }
        return Probe("POST", STRIPE, headers, other)

    admin_probe = Probe("GET", "/admin/users", _bearer(admin))
    steps = [
        Step("clean activation (alice@acme)", _activate(_json(clean), alice), 200),
        Step("SSRF callbackUrl (cloud metadata)", _activate(_json(ssrf), alice), 403),
        Step("tenant mismatch (acme token, globex body)", _activate(_json(foreign), alice), 403),
        Step("no token", _activate(_json(clean), None), 403),
        Step("malformed JSON", _activate(b'{"licenseKey": "LIC-', alice), 400),
        Step("Stripe webhook, valid signature", stripe_valid, 200),
        Step("same Stripe webhook replayed", stripe_valid, 403),
        Step("Stripe webhook, forged signature", stripe_forged, 403),
        Step("admin route (admin-scoped token)", lambda: admin_probe, 403),
    ]
    if policy_file is not None:
        steps.append(
            Step(
                "policy edit: admin allowed for 'admin' scope",
                lambda: admin_probe,
                200,
                prepare=lambda: allow_admin_scope(policy_file),
                wait_seconds=RELOAD_WAIT_SECONDS,
            )
        )
    return steps


ADMIN_RULE_ID = "admin.denied"
ADMIN_RULE_EXPR = "'admin' in identity.scopes"


def allow_admin_scope(policy_file: Path) -> str:
    """Hot-reload edit: the ``admin.denied`` CEL rule now admits tokens with the admin scope."""
    import yaml

    doc = yaml.safe_load(policy_file.read_text(encoding="utf-8"))
    rule = _find_rule(doc, ADMIN_RULE_ID)
    rule.setdefault("config", {})["expr"] = ADMIN_RULE_EXPR
    tmp = policy_file.with_name(policy_file.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tmp.replace(policy_file)  # atomic: the reloader never sees half a file
    return f"{policy_file.name}: {ADMIN_RULE_ID} expr -> {ADMIN_RULE_EXPR}"


def _find_rule(doc: Any, rule_id: str) -> dict[str, Any]:
    """The rule mapping with ``id == rule_id`` anywhere in the policy document."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("id") == rule_id and ("config" in node or "expr" in node):
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise LookupError(f"rule {rule_id!r} not found in the policy")


# --- the table -------------------------------------------------------------------------------

COLUMNS = ("#", "request", "what", "expected", "status", "decision", "rule hits")
_WIDTHS = (2, 31, 42, 8, 6, 8)


def _cells(values: Sequence[str]) -> str:
    parts = [f"{values[0]:>{_WIDTHS[0]}}"]
    parts += [f"{v:<{w}}" for v, w in zip(values[1:3], _WIDTHS[1:3], strict=True)]
    parts += [f"{v:>{w}}" for v, w in zip(values[3:5], _WIDTHS[3:5], strict=True)]
    parts += [f"{values[5]:<{_WIDTHS[5]}}", values[6]]
    return "  ".join(parts).rstrip()


def format_header() -> str:
    header = _cells(COLUMNS)
    return header + "\n" + "-" * (len(header) + 16)


def format_row(result: StepResult) -> str:
    """One table line (plus an indented note line when the step has one)."""
    hits = ", ".join(result.rule_hits) or "-"
    line = _cells(
        (
            str(result.number),
            result.request,
            result.label,
            str(result.expected),
            str(result.status),
            result.decision,
            hits,
        )
    )
    if not result.ok:
        line += "   <-- MISMATCH"
    if result.note:
        line += f"\n{'':>4}{result.note}"
    return line


def summary(results: Sequence[StepResult]) -> str:
    failed = [r for r in results if not r.ok]
    if not failed:
        return f"all {len(results)} steps matched expectations"
    numbers = ", ".join(str(r.number) for r in failed)
    return f"{len(failed)} of {len(results)} steps did NOT match expectations: #{numbers}"
