"""Where a check's CPU goes, per door, in-process (no sockets): the "Sizing" table's source.

Each door is timed whole (the handler the HTTP server or grpc.aio calls, from body bytes to
answer bytes) and stage by stage: body JSON decode, context build, the decider (and inside
it the engine's phases and the CEL activation), answer encoding. A stage is timed alone over
many calls, best of ``--rounds`` rounds (the machine is shared: the minimum is the least
disturbed), so the stages add up to about the whole, not exactly. "checks/core-s" is
1e6 / the whole door's µs: what one core spends in the handler, without the HTTP server's
parsing, the socket and grpc.aio, which the end-to-end benches (``http_bench``,
``envoy_bench``, ``node_sidecar_bench``) include.

Policies: the demo policy (``policies/demo.yaml``, the clean license activation: schema,
vulnerability checks, two CEL rules) and an OpenAPI-derived one (the same route's contract
from an OpenAPI 3.1 operation, ``openapi: {spec: ...}``, no CEL rules).

The "codec:" rows time ``context_codec`` (msgspec) beside the plain stages it replaces, in the
same process; the door rows use whatever the doors use. Run on an older checkout (copy the
file) for a before/after of the whole doors.

Run: ``.venv/bin/python bench/door_profile.py [--n 4000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest  # noqa: E402

try:  # absent before the fast codec: the profile then shows the plain stages only
    from extauthz import context_codec as codec
except ImportError:  # pragma: no cover
    codec = None  # type: ignore[assignment]


def new_id() -> str:
    return "0" * 32


from bench.engine import activate_spec  # noqa: E402
from extauthz._http import HttpIn  # noqa: E402
from extauthz._json import COMPACT_ASCII  # noqa: E402
from extauthz.client._request import build_check_request, describe  # noqa: E402
from extauthz.context import RequestContext  # noqa: E402
from extauthz.engine import cel as cel_mod  # noqa: E402
from extauthz.engine import pipeline  # noqa: E402
from extauthz.envoy.request import AdapterOptions, check_request_to_context  # noqa: E402
from extauthz.server.app import build_state  # noqa: E402
from extauthz.server.config import ServerConfig  # noqa: E402
from extauthz.server.grpc_service import AuthorizationServicer, check_bytes  # noqa: E402
from extauthz.server.http_api import HttpApi  # noqa: E402

DEMO_POLICY = ROOT / "policies" / "demo.yaml"
PATH = "/api/v1/licenses/activate"
CLEAN = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "device-42",
    "tenantId": "acme",
    "callbackUrl": "https://app.example.com/hooks/license",
}
CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}
HEADERS = {
    "content-type": "application/json",
    "user-agent": "bench/1.0",
    "x-request-id": "rid-bench",
}


def openapi_policy(tmp: Path) -> Path:
    """The demo's license-activate contract from an OpenAPI 3.1 operation (as bench/engine.py)."""
    spec, _ = activate_spec()
    (tmp / "openapi.json").write_text(json.dumps(spec))
    (tmp / "spec.yaml").write_text(
        'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./openapi.json}\n'
    )
    return tmp / "spec.yaml"


def per_call(fn: Callable[[], object], n: int, rounds: int) -> float:
    """µs per call: the best of ``rounds`` rounds of ``n`` calls (least disturbed)."""
    for _ in range(min(500, n)):
        fn()
    best = float("inf")
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    finally:
        gc.enable()
    return best


def run_sync(answer: Any) -> Any:
    """Drive a coroutine that never suspends (no replay claim) to its value."""
    if not isinstance(answer, Coroutine):
        return answer
    try:
        answer.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended: not a synchronous check")


class Profile:
    def __init__(self, policy_path: Path, n: int, rounds: int) -> None:
        state = build_state(
            ServerConfig(policy_path=str(policy_path), hot_reload=False, decision_log="off")
        )
        self.state = state
        self.servicer = AuthorizationServicer(state)
        self.api = HttpApi(state, self.servicer)
        self.decider = self.servicer.decider
        self.policy = state.policy_source.current()
        self.n, self.rounds = n, rounds
        raw = json.dumps(CLEAN).encode()
        headers = {**HEADERS, "content-length": str(len(raw))}
        self.check_request = build_check_request(
            describe(
                "POST",
                PATH,
                headers=headers,
                body=raw,
                identity=CLAIMS,
                client_ip="10.0.0.7",
                host="api.example",
                scheme="http",
            )
        )
        self.check_bytes = self.check_request.SerializeToString()
        self.options = AdapterOptions.from_config(state.config)
        ctx = check_request_to_context(self.check_request, self.options)
        doc = ctx.to_dict()
        doc["request"]["body"] = {"json": {"sample": CLEAN}}  # what a PEP sends
        doc["request"]["query"] = {}
        doc["id"] = ""
        self.context_json = json.dumps(doc).encode()
        self.upstream_json = json.dumps({"context": doc}).encode()
        payload = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=").decode()
        self.authz_headers = {**headers, "host": "api.example", "x-jwt-payload": payload}
        self.raw = raw

    def t(self, fn: Callable[[], object]) -> float:
        return per_call(fn, self.n, self.rounds)

    def engine_phases(self, ctx: RequestContext) -> dict[str, float]:
        """µs per engine phase (``pipeline.timed``), and the CEL activation alone."""
        spent: dict[str, int] = {}

        def on_phase(name: str, start: int, end: int) -> None:
            spent[name] = spent.get(name, 0) + end - start

        phases = pipeline.timed(on_phase, time.perf_counter_ns)
        calls = self.n
        for _ in range(calls):
            pipeline.begin(self.policy, ctx, time.time(), phases)
        out = {name: ns / calls / 1000 for name, ns in spent.items()}
        route = self.policy.routes_by_id.get(
            pipeline.begin(self.policy, ctx, time.time()).metadata.route_id or ""
        )
        if route is not None and route.cel is not None:
            plan = route.cel
            view = pipeline.cel_view(ctx, PATH, {}, CLEAN, route, False)
            if plan.fast is not None:
                out["cel activation"] = self.t(lambda: cel_mod._fast_context(plan.fast, view))
            else:
                out["cel activation"] = self.t(
                    lambda: cel_mod.cel.Context(
                        variables={name: get(view) for name, get in plan.flat}
                        | {var: {f: g(view) for f, g in fs} for var, fs in plan.nested}
                    )
                )
        return out

    def evaluate_v1(self) -> list[tuple[str, float]]:
        body = self.context_json
        request = HttpIn("POST", "/v1/evaluate", "", {"content-type": "application/json"}, body)
        assert run_sync(self.api(request)).status == 200
        data = json.loads(body)
        ctx = RequestContext.from_dict({**data, "id": "x"})
        outcome = self.decider.begin(ctx, "http")
        rows: list[tuple[str, float]] = [
            ("door: HttpApi(POST /v1/evaluate)", self.t(lambda: self.api(request))),
            ("  body JSON decode (json.loads)", self.t(lambda: json.loads(body))),
            ("  context build (from_dict)", self.t(lambda: RequestContext.from_dict(data))),
            ("  decider.begin", self.t(lambda: self.decider.begin(ctx, "http"))),
            ("  answer (Decision.to_json)", self.t(lambda: outcome.decision.to_json().encode())),
        ]
        if codec is not None:  # the fast codec beside the plain stages, same process
            rows += [
                ("  codec: decode + context (msgspec)",
                 self.t(lambda: codec.fast_context(body, new_id))),
                ("  codec: answer (decision_json)",
                 self.t(lambda: codec.decision_json(outcome.decision))),
            ]  # fmt: skip
        return rows + [(f"    engine: {k}", v) for k, v in self.engine_phases(ctx).items()]

    def evaluate_upstream(self) -> list[tuple[str, float]]:
        body = self.upstream_json
        request = HttpIn("POST", "/evaluate", "", {"content-type": "application/json"}, body)
        assert run_sync(self.api(request)).status == 200
        data = json.loads(body)
        ctx = RequestContext.from_dict({**data["context"], "id": "x"})
        outcome = self.decider.begin(ctx, "http")
        return [
            ("door: HttpApi(POST /evaluate)", self.t(lambda: run_sync(self.api(request)))),
            ("  body JSON decode (json.loads)", self.t(lambda: json.loads(body))),
            ("  context build (from_dict)",
             self.t(lambda: RequestContext.from_dict(data["context"]))),
            ("  decider.begin", self.t(lambda: self.decider.begin(ctx, "http"))),
            ("  answer (to_dict + JSON)",
             self.t(lambda: COMPACT_ASCII.encode(
                 {"decision": outcome.decision.to_dict(), "durationMs": 0.123}).encode())),
        ] + ([] if codec is None else [
            ("  codec: decode + context (msgspec)",
             self.t(lambda: codec.fast_envelope(body, new_id))),
            ("  codec: answer (upstream_answer)",
             self.t(lambda: codec.upstream_answer(outcome.decision, 0.123))),
        ])  # fmt: skip

    def grpc(self) -> list[tuple[str, float]]:
        data = self.check_bytes
        ctx = check_request_to_context(self.check_request, self.options)
        outcome = self.decider.begin(ctx, "grpc")
        assert outcome.decision.action == "ALLOW", outcome.decision
        return [
            ("door: AuthorizationServicer.respond", self.t(lambda: self.servicer.respond(data))),
            ("  CheckRequest.FromString", self.t(lambda: CheckRequest.FromString(data))),
            ("  context build (adapter)",
             self.t(lambda: check_request_to_context(self.check_request, self.options))),
            ("  decider.begin", self.t(lambda: self.decider.begin(ctx, "grpc"))),
            ("  answer (check_bytes)", self.t(lambda: check_bytes(outcome, ctx.identity))),
        ]  # fmt: skip

    def http_authz(self) -> list[tuple[str, float]]:
        headers, raw = self.authz_headers, self.raw
        authz = self.api.authz

        def request() -> HttpIn:
            return HttpIn("POST", "/ext_authz" + PATH, "", headers, raw, "10.0.0.7")

        assert authz(request()).status == 200
        build = self.t(request)
        return [
            ("door: HttpAuthorization (Envoy HTTP mode)",
             self.t(lambda: authz(request())) - build),
            ("  context build (decode + adapter)",
             self.t(lambda: authz.door.decode(request())) - build),
            ("  decider.begin", self.t(lambda: self.decider.begin(
                authz.door.decode(request()), "http_authz")) - self.t(
                lambda: authz.door.decode(request()))),
        ]  # fmt: skip


def plain_vs_codec(prof: Profile, rounds: int) -> None:
    """The JSON doors with the plain codec and with ``context_codec``, interleaved rounds in
    this process (the doors' module attributes switched between rounds): same-run ratios."""
    from extauthz.server import evaluate_api, http_api

    def plain_answer(decision: Any, ms: float) -> bytes:
        return COMPACT_ASCII.encode({"decision": decision.to_dict(), "durationMs": ms}).encode()

    paths = {
        "plain": (codec.plain_context, lambda d: d.to_json().encode(), lambda b, n: None,
                  plain_answer),
        "codec": (codec.context_from_json, codec.decision_json, codec.fast_envelope,
                  codec.upstream_answer),
    }  # fmt: skip

    def use(name: str) -> None:
        (http_api.context_from_json, http_api.decision_json, evaluate_api.fast_envelope,
         evaluate_api.upstream_answer) = paths[name]  # fmt: skip

    doors = {
        "/v1/evaluate": HttpIn("POST", "/v1/evaluate", "", {}, prof.context_json),
        "/evaluate": HttpIn("POST", "/evaluate", "", {}, prof.upstream_json),
    }
    for door, request in doors.items():
        times: dict[str, list[float]] = {"plain": [], "codec": []}
        for _ in range(rounds):
            for name in ("plain", "codec"):
                use(name)
                times[name].append(
                    per_call(lambda r=request: run_sync(prof.api(r)), prof.n // 4, 1)
                )
        use("codec")
        ratios = sorted(p / c for p, c in zip(times["plain"], times["codec"], strict=True))
        plain_us, codec_us = (min(times[k]) for k in ("plain", "codec"))
        print(
            f"{door:14s} best plain {plain_us:7.2f} µs  codec {codec_us:7.2f} µs "
            f"({plain_us / codec_us:.2f}x); per-round plain/codec median "
            f"{statistics.median(ratios):.2f}x, quartiles {ratios[len(ratios) // 4]:.2f}-"
            f"{ratios[3 * len(ratios) // 4]:.2f} ({rounds} interleaved rounds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policies = {"demo": DEMO_POLICY, "openapi": openapi_policy(Path(tmp))}
        profiles = {name: Profile(path, args.n, args.rounds) for name, path in policies.items()}
    for name, prof in profiles.items():
        print(f"\n== {name} policy (µs per call, best of {args.rounds} x {args.n}) ==")
        for door in (prof.evaluate_v1, prof.evaluate_upstream, prof.grpc, prof.http_authz):
            for label, us in door():
                extra = f"   {1e6 / us:9,.0f} checks/core-s" if label.startswith("door") else ""
                print(f"{label:44s} {us:8.2f}{extra}")
        if codec is not None:
            print(f"-- {name} policy: the JSON doors, plain codec vs context_codec --")
            plain_vs_codec(prof, args.rounds * 4 + 1)


if __name__ == "__main__":
    main()
