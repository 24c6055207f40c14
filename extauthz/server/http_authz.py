"""Envoy's HTTP-mode ext_authz on the HTTP server: convert, decide, answer; never raises.

The HTTP twin of ``grpc_service.AuthorizationServicer``: the same ``decide_now`` (deadline,
replay claim, metrics), the same drain accounting (``active``/``last_started`` of the
servicer, so a drain waits for checks in either mode), the adapter pair in ``envoy.http_*``,
the same ``ext_authz.check`` span when tracing is on (``traced``).
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

from .._exceptions import InvalidContext
from .._http import HttpIn, HttpOut
from ..context import Identity
from ..envoy.grpc_status import is_grpc
from ..envoy.http_request import forwarded_request_to_context
from ..envoy.http_response import decision_to_http
from ..envoy.request import AdapterOptions
from .decide import Outcome, decide_now, internal_error, invalid_request, observe_rejected
from .grpc_service import AuthorizationServicer
from .state import ServerState

#: Envoy's ``http_service.path_prefix`` in the shipped config: ``/ext_authz/api/x`` is the
#: check of ``/api/x``. The HTTP API's own paths never start with it.
AUTHZ_PREFIX = "/ext_authz"
TRANSPORT = "http_authz"


class HttpAuthorization:
    """``__call__(request)`` → ``HttpOut``, or a coroutine of it when a replay claim is due."""

    def __init__(self, state: ServerState, activity: AuthorizationServicer) -> None:
        self._state = state
        self._options = AdapterOptions.from_config(state.config)
        self._activity = activity

    def __call__(self, request: HttpIn) -> HttpOut | Coroutine[Any, Any, HttpOut]:
        activity = self._activity
        activity.active += 1
        activity.last_started = time.monotonic()
        pending = False
        try:
            identity = None
            grpc = False
            request.path = request.path[len(AUTHZ_PREFIX) :] or "/"
            try:
                ctx = forwarded_request_to_context(request, self._options)
            except InvalidContext as exc:
                self._state.metrics.observe_error(InvalidContext.code)
                outcome: Outcome = observe_rejected(
                    self._state, invalid_request(str(exc)), TRANSPORT
                )
            else:
                identity = ctx.identity
                grpc = is_grpc(ctx.request.content_type)  # a denial then carries a gRPC status
                decided = decide_now(self._state, ctx, TRANSPORT)
                if not isinstance(decided, Outcome):
                    pending = True
                    return self._after_claim(decided, identity, grpc)
                outcome = decided
            return _answer(outcome, identity, grpc)
        except Exception:  # last resort: even a bug in the response builder is a denial
            return _answer(internal_error(), None)
        finally:
            if not pending:
                activity.active -= 1

    async def traced(self, request: HttpIn) -> HttpOut:
        """The check inside an OpenTelemetry span (tracing on only): the gRPC check's name and
        attributes, its parent the trace context Envoy's ext_authz client put in the headers."""
        tracer = self._state.tracer
        started = tracer.start("ext_authz.check", request.headers, TRANSPORT)
        try:
            answer = self(request)
            return answer if isinstance(answer, HttpOut) else await answer
        finally:
            tracer.end(started)

    async def _after_claim(
        self, decided: Coroutine[Any, Any, Outcome], identity: Identity | None, grpc: bool
    ) -> HttpOut:
        try:
            return _answer(await decided, identity, grpc)
        except Exception:
            return _answer(internal_error(), None)
        finally:
            self._activity.active -= 1


def _answer(outcome: Outcome, identity: Identity | None, grpc: bool = False) -> HttpOut:
    return decision_to_http(
        outcome.decision,
        identity,
        error_code=outcome.error_code,
        cacheable=outcome.cacheable,
        grpc=grpc,
    )
