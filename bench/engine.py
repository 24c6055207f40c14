"""In-process ``evaluate()`` latency on the demo policy: prints p50/p99 in µs.

Two requests: a clean license activation (schema + vulnerability checks + two CEL rules) and
an attack on the same route (prototype pollution, SSRF, command injection, schema and CEL
failures). Also prints the JSON Schema engine comparison that chose fastjsonschema, and the
route-lookup cost with 10 and 1,000 routes, and a route generated from an OpenAPI document
(``openapi: {spec: ...}``) against the same route written by hand, as a ratio over interleaved
rounds. Run: ``.venv/bin/python bench/engine.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.context import Body, HttpRequest, Identity, RequestContext  # noqa: E402
from extauthz.engine import evaluate  # noqa: E402
from extauthz.engine.contract import compile_validator  # noqa: E402
from extauthz.engine.matcher import RouteMatcher, parse_pattern  # noqa: E402
from extauthz.policy import load_policy  # noqa: E402

CLEAN_BODY = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "device-42",
    "tenantId": "tenant-a",
    "callbackUrl": "https://app.example.com/hooks/license",
}
ATTACK_BODY = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "x; rm -rf / #",
    "tenantId": "tenant-b",
    "callbackUrl": "http://169.254.169.254/latest/meta-data/",
    "__proto__": {"isAdmin": True},
}


def context(body: dict[str, object], *, authenticated: bool = True) -> RequestContext:
    raw = json.dumps(body).encode()
    return RequestContext(
        request=HttpRequest(
            method="POST",
            path="/api/v1/licenses/activate",
            headers={
                "content-type": "application/json",
                "host": "api.example.com",
                "user-agent": "bench/1.0",
                "content-length": str(len(raw)),
            },
            content_type="application/json",
            body=Body(present=True, size_bytes=len(raw), raw=raw),
        ),
        identity=Identity(authenticated=authenticated, subject="user-1", tenant="tenant-a"),
        id="bench",
    )


def measure(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(2000, n)):
        fn()
    samples = []
    gc.disable()
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000, help="iterations per figure")
    args = parser.parse_args()
    policy = load_policy(ROOT / "policies" / "demo.yaml")
    clean = context(CLEAN_BODY)
    attack = context(ATTACK_BODY, authenticated=False)
    assert evaluate(policy, clean).action == "ALLOW", evaluate(policy, clean)
    assert evaluate(policy, attack).action == "BLOCK"
    print(f"python {sys.version.split()[0]}, {args.n} iterations per figure")
    print(
        "target: clean license-activate p50 <= 35 µs (schema + vulnerability checks + 2 CEL rules)"
    )
    for name, ctx in (("clean license-activate", clean), ("attack license-activate", attack)):
        p50, p99 = measure(lambda c=ctx: evaluate(policy, c), args.n)
        print(f"evaluate() {name:26s} p50 {p50:7.1f} µs   p99 {p99:7.1f} µs")

    schema = json.loads((ROOT / "policies/schemas/license-activate.json").read_text())
    for engine in ("fastjsonschema", "jsonschema"):
        validate, used = compile_validator(schema, engine=engine)
        assert validate(CLEAN_BODY) is None
        p50, p99 = measure(lambda v=validate: v(CLEAN_BODY), args.n)
        print(f"schema validation {used:18s}  p50 {p50:7.1f} µs   p99 {p99:7.1f} µs")

    spec_vs_hand(args.n)

    for count in (10, 1000):
        entries = []
        for i in range(count):
            entries.append((("GET",), parse_pattern(f"/svc{i}/items/{{id}}"), i))
            entries.append((("POST",), parse_pattern(f"/svc{i}/items"), i))
        matcher = RouteMatcher(entries)
        target = f"/svc{count // 2}/items/abc"
        assert matcher.match("GET", target) is not None
        p50, p99 = measure(lambda m=matcher, t=target: m.match("GET", t), args.n)
        print(f"route lookup, {2 * count:5d} routes          p50 {p50:7.2f} µs   p99 {p99:7.2f} µs")


def activate_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """(OpenAPI 3.1 document, its schema): the demo's license-activate contract as an
    operation (also bench/door_profile.py's OpenAPI policy)."""
    schema = json.loads((ROOT / "policies/schemas/license-activate.json").read_text())
    schema.pop("$schema", None)
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "bench", "version": "1"},
        "paths": {
            "/api/v1/licenses/activate": {
                "post": {
                    "operationId": "activate",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Activate"}
                            }
                        },
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": {"Activate": schema}},
    }
    return spec, schema


def spec_vs_hand(n: int, rounds: int = 5) -> None:
    """The demo's license-activate contract, from an OpenAPI operation and by hand."""
    spec, schema = activate_spec()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "openapi.json").write_text(json.dumps(spec))
        (d / "schema.json").write_text(json.dumps(schema))
        (d / "spec.yaml").write_text(
            'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./openapi.json}\n'
        )
        (d / "hand.yaml").write_text(
            'policyVersion: "0.1"\nroutes:\n  - id: activate\n'
            "    match: {method: POST, path: /api/v1/licenses/activate}\n"
            "    contract: {requestSchemaRef: ./schema.json}\n"
        )
        from_spec, by_hand = load_policy(d / "spec.yaml"), load_policy(d / "hand.yaml")
    ctx = context(CLEAN_BODY)
    bad = context({**CLEAN_BODY, "licenseKey": 5})
    for p in (from_spec, by_hand):
        assert evaluate(p, ctx).action == "ALLOW"
        assert evaluate(p, bad).action == "BLOCK"
    assert from_spec.routes[0].contract.engine == by_hand.routes[0].contract.engine
    ratios: list[float] = []
    for _ in range(rounds):  # interleaved: the machine is shared
        spec_p50, _ = measure(lambda: evaluate(from_spec, ctx), n // rounds)
        hand_p50, _ = measure(lambda: evaluate(by_hand, ctx), n // rounds)
        ratios.append(spec_p50 / hand_p50)
    print(
        f"spec-derived route vs the same hand-written route: p50 ratio median "
        f"{sorted(ratios)[rounds // 2]:.2f} ({', '.join(f'{r:.2f}' for r in ratios)}; "
        f"{rounds} interleaved rounds; "
        f"schema engine {by_hand.routes[0].contract.engine})"
    )


if __name__ == "__main__":
    main()
