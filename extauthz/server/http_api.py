"""What each HTTP path does: the JSON evaluation API, the protobuf check, Envoy's HTTP-mode
ext_authz, probes and metrics. The server machinery (parsing, keep-alive, limits) is
``http_server``; this module only maps one ``HttpIn`` to one ``HttpOut``.

    POST /evaluate      {"context": ...} → {"decision": ..., "durationMs": ...} (upstream's
                        sidecar API; see ``evaluate_api``)
    POST /v1/evaluate   RequestContext JSON → Decision JSON (the server's policy, never the
                        caller's); a body that is not a valid context → 400 with the reason;
                        ``?explain=1`` → {decision, explain} when EXPLAIN_API is on, else 403
    POST /v1/check      CheckRequest bytes → CheckResponse bytes (application/x-protobuf): the
                        gRPC servicer's path over HTTP, for the client's HTTP transport
    *    /ext_authz/... Envoy's ``http_service`` ext_authz (see ``http_authz``)
    GET  /live          200 while the process runs
    GET  /ready         200 when ready (see ``health.readiness``), else 503 with the reason
    GET  /health        JSON report; 200 for ok/degraded, 503 for unhealthy
    GET  /metrics       Prometheus exposition

No access log at the default level: per-request logging costs more than a decision. A
handler answers synchronously when it can (no coroutine, no task): only a replay claim or a
health probe that asks the replay store waits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from .. import __version__
from .._exceptions import InvalidContext
from .._http import HttpIn, HttpOut
from .._json import COMPACT_ASCII
from ..context import RequestContext
from ..context_codec import context_from_json, decision_json, random_request_id
from ..decider import Claim
from ..decision import Decision
from ..outcome import INTERNAL_ERROR, INVALID_REQUEST, Outcome, log_internal_error
from . import evaluate_api
from .grpc_service import AuthorizationServicer
from .health import health_report, readiness
from .http_authz import AUTHZ_PREFIX, HttpAuthorization
from .metrics import CONTENT_TYPE_LATEST
from .state import ServerState

Answer = HttpOut | Awaitable[HttpOut]
Handler = Callable[[HttpIn], Answer]

log = logging.getLogger("extauthz.server")

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
_AUTHZ_PREFIX_SLASH = AUTHZ_PREFIX + "/"


def _json(data: object, status: int = 200) -> HttpOut:
    return HttpOut(status, COMPACT_ASCII.encode(data).encode(), JSON)


class HttpApi:
    """The request handler: ``HttpServer(HttpApi(state, servicer), ...)``."""

    def __init__(self, state: ServerState, servicer: AuthorizationServicer) -> None:
        self.state = state
        self.servicer = servicer
        self.decider = servicer.decider
        self.authz = HttpAuthorization(state, servicer)
        # Chosen once: with tracing off a check is the plain call (no span, no coroutine).
        self._authz = self.authz if state.tracer is None else self.authz.traced
        self.routes: dict[str, tuple[str, Handler]] = {
            "/v1/evaluate": ("POST", self.evaluate),
            "/evaluate": ("POST", self.evaluate_upstream),
            "/v1/check": ("POST", self.check),
            "/live": ("GET", self.live),
            "/ready": ("GET", self.ready),
            "/health": ("GET", self.health),
            "/metrics": ("GET", self.metrics),
        }

    def __call__(self, request: HttpIn) -> Answer:
        path = request.path
        route = self.routes.get(path)
        if route is None:
            if path.startswith(_AUTHZ_PREFIX_SLASH) or path == AUTHZ_PREFIX:
                return self._authz(request)  # never raises
            return _json({"error": f"no such endpoint: {path[:100]}"}, 404)
        method, handler = route
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return HttpOut(405, headers=(("allow", method),))
        try:
            answer = handler(request)
        except Exception:
            return self._internal_error(path)
        if isinstance(answer, HttpOut):
            return answer
        return self._guarded(path, answer)

    async def _guarded(self, path: str, answer: Awaitable[HttpOut]) -> HttpOut:
        try:
            return await answer
        except Exception:
            return self._internal_error(path)

    def _internal_error(self, path: str) -> HttpOut:
        error_id = log_internal_error(f"in {path[:100]}")
        self.state.metrics.observe_error("internal_error")
        return _json(
            {"error": f"internal error (error id {error_id})", "code": INTERNAL_ERROR}, 500
        )

    def evaluate(self, request: HttpIn) -> Answer:
        state = self.state
        try:
            # msgspec straight into the context's types, else json.loads + from_dict (the
            # refusals' path): ``context_codec``. Every decision carries a request id.
            ctx = context_from_json(request.body, random_request_id)
        except InvalidContext as exc:
            state.metrics.observe_error(InvalidContext.code)
            return _json({"error": str(exc), "code": INVALID_REQUEST}, 400)
        explain = bool(request.query) and _explain_asked(request.query)
        if explain and not state.config.explain_api:
            return _json(
                {"error": "explain is off on this server (EXPLAIN_API=1 turns it on)",
                 "code": "EXPLAIN_DISABLED"},
                403,
            )  # fmt: skip
        if explain or state.tracer is not None:
            return self._evaluate_observed(request, ctx, explain)
        decided = self.decider.begin(ctx, "http")
        if isinstance(decided, Claim):
            return _decision_later(decided)
        return _decision(decided)

    async def _evaluate_observed(
        self, request: HttpIn, ctx: RequestContext, explain: bool
    ) -> HttpOut:
        """``evaluate`` inside a trace span (tracing on) and/or with the explanation."""
        state = self.state
        tracer = state.tracer
        started = (
            tracer.start("contractshield.evaluate", request.headers, "http") if tracer else None
        )
        try:
            outcome = await self.decider.decide_async(ctx, "http")
        finally:
            if started is not None:
                tracer.end(started)  # type: ignore[union-attr]
        if explain:
            return _json(explained(state, ctx, outcome.decision))
        return _decision(outcome)

    def check(self, request: HttpIn) -> Answer:
        answer = self.servicer.respond(request.body, "http")
        if isinstance(answer, bytes):
            return HttpOut(200, answer, PROTOBUF)
        return _bytes_later(answer)

    def evaluate_upstream(self, request: HttpIn) -> Answer:
        """Upstream ContractShield's ``POST /evaluate`` (see ``evaluate_api``)."""
        answer = evaluate_api.answer(self.state, self.decider, request.body)
        if isinstance(answer, tuple):
            return HttpOut(answer[0], answer[1], JSON)
        return _answer_later(answer)

    def live(self, request: HttpIn) -> Answer:
        return _json({"status": "ok"})

    async def ready(self, request: HttpIn) -> HttpOut:
        ok, reason = await readiness(self.state)
        return _json({"ready": ok, "reason": reason}, 200 if ok else 503)

    async def health(self, request: HttpIn) -> HttpOut:
        report = await health_report(self.state, __version__)
        return _json(report, 503 if report["status"] == "unhealthy" else 200)

    def metrics(self, request: HttpIn) -> Answer:
        return HttpOut(200, self.state.metrics.exposition(), CONTENT_TYPE_LATEST)


def _explain_asked(query: str) -> bool:
    value = parse_qs(query, keep_blank_values=True).get("explain", [""])[-1]
    return value not in ("", "0", "false")


def explained(state: ServerState, ctx: RequestContext, decision: Decision) -> dict[str, Any]:
    """``{"decision": ..., "explain": ...}`` under the policy now loaded (EXPLAIN_API only)."""
    from ..engine.explain import explain

    policy = state.policy_source.current()
    return {"decision": decision.to_dict(), "explain": explain(policy, ctx, decision).to_dict()}


def _decision(outcome: Outcome) -> HttpOut:
    return HttpOut(200, decision_json(outcome.decision), JSON)  # to_json()'s bytes


async def _decision_later(claim: Claim) -> HttpOut:
    return _decision(await claim.outcome())


async def _answer_later(answer: Awaitable[tuple[int, bytes]]) -> HttpOut:
    status, body = await answer
    return HttpOut(status, body, JSON)


async def _bytes_later(answer: Coroutine[Any, Any, bytes]) -> HttpOut:
    return HttpOut(200, await answer, PROTOBUF)
