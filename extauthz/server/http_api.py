"""HTTP on the server's event loop: the JSON evaluation API, probes and metrics.

    POST /v1/evaluate   RequestContext JSON → Decision JSON (the server's policy, never the
                        caller's); a body that is not a valid context → 400 with the reason
    GET  /live          200 while the process runs
    GET  /ready         200 when ready (see ``health.readiness``), else 503 with the reason
    GET  /health        JSON report; 200 for ok/degraded, 503 for unhealthy
    GET  /metrics       Prometheus exposition

No access log at the default level: per-request logging costs more than a decision.
"""

from __future__ import annotations

import json
import logging
import os

from aiohttp import web

from .. import __version__
from .._exceptions import InvalidContext
from ..context import RequestContext
from ..envoy.response import INVALID_REQUEST
from ..metrics import CONTENT_TYPE_LATEST
from .decide import decide
from .health import health_report, readiness
from .state import ServerState

log = logging.getLogger("extauthz.server")

STATE_KEY = web.AppKey("state", ServerState)
_JSON = "application/json"
_JSON_HEADERS = {"Content-Type": _JSON}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(), status=status, content_type=_JSON
    )


async def evaluate(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.read()
    try:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidContext(f"context is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and not data.get("id"):
            data["id"] = os.urandom(16).hex()  # every decision carries a request id
        ctx = RequestContext.from_dict(data)
    except InvalidContext as exc:
        state.metrics.observe_error(InvalidContext.code)
        return _json({"error": str(exc), "code": INVALID_REQUEST}, 400)
    outcome = await decide(state, ctx, "http")
    return web.Response(body=outcome.decision.to_json().encode(), headers=_JSON_HEADERS)


async def live(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    ok, reason = await readiness(request.app[STATE_KEY])
    return _json({"ready": ok, "reason": reason}, 200 if ok else 503)


async def health(request: web.Request) -> web.Response:
    report = await health_report(request.app[STATE_KEY], __version__)
    return _json(report, 503 if report["status"] == "unhealthy" else 200)


async def metrics(request: web.Request) -> web.Response:
    exposition = request.app[STATE_KEY].metrics.exposition()
    return web.Response(body=exposition, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(state: ServerState, *, max_request_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes)
    app[STATE_KEY] = state
    app.router.add_post("/v1/evaluate", evaluate)
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
