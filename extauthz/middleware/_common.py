"""What the ASGI and WSGI middleware share: deny responses and the in-process decider.

Both flavours describe the incoming request with the client's ``describe`` (the same
normalized ``CheckInput`` the client sends). The embedded decider then goes through the very
adapter the server uses (``CheckInput`` → ``CheckRequest`` → ``RequestContext``), so the
embedded, sidecar and centralized patterns build identical contexts and decide identically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import ContractShieldError, InvalidContext
from ..client._request import DEFAULT_CLAIM_NAMES, CheckInput, ClaimNames, build_check_request
from ..decision import Decision
from ..outcome import Outcome, error_code, internal_error

if TYPE_CHECKING:
    import os

    from ..context import RequestContext
    from ..decider import Decider
    from ..engine.replay import AsyncReplayStore, ReplayStore
    from ..policy import CompiledPolicy
    from ..policy.source import PolicySource

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # what is buffered for inspection (Envoy's max_request_bytes)
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"
POLICY_VIOLATION = "POLICY_VIOLATION"
PDP_UNAVAILABLE = "PDP_UNAVAILABLE"
ASGI_STATE_KEY = "contractshield_decision"
WSGI_ENVIRON_KEY = "contractshield.decision"
TRANSPORT = "embedded"  # the decider's transport label for an in-process check

log = logging.getLogger("extauthz.middleware")


@dataclass(slots=True, frozen=True)
class DenyResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def deny_response(decision: Decision) -> DenyResponse:
    """BLOCK → the decision's status and the same JSON body Envoy returns (the internal-error
    denial keeps its ``INTERNAL_ERROR`` code, as at every other door)."""
    body = {
        "error": decision.reason or "request blocked by policy",
        "code": error_code(decision),
        "ruleHits": list(decision.rule_ids),
        "requestId": decision.metadata.request_id,
    }
    return DenyResponse(decision.status_code, _json(body))


def unavailable_response(exc: ContractShieldError) -> DenyResponse:
    """No decision and failing closed → 503, like Envoy's ``status_on_error``."""
    return DenyResponse(
        503, _json({"error": "policy decision point unavailable", "code": PDP_UNAVAILABLE})
    )


def invalid_request_response(exc: Exception) -> DenyResponse:
    """A request that cannot even be described (e.g. a non-string header) → 400."""
    return DenyResponse(400, _json({"error": f"invalid request: {exc}", "code": "INVALID_REQUEST"}))


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Middleware:
    """What both flavours share: the app, the identity resolver, the body limit and the
    overridable responses."""

    def __init__(
        self,
        app: Any,
        *,
        identity: Callable[[Any], Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.identity = identity
        self.max_body_bytes = max_body_bytes

    def deny_response(self, decision: Decision) -> DenyResponse:
        return deny_response(decision)

    def unavailable_response(self, exc: ContractShieldError) -> DenyResponse:
        return unavailable_response(exc)


class Remote(Middleware):
    """Asks a PDP with the client (``client``, or one made from ``target`` and any client
    options); ``client_class`` is the flavour's client."""

    client_class: Callable[..., Any]

    def __init__(
        self,
        app: Any,
        *,
        client: Any = None,
        target: str | None = None,
        identity: Callable[[Any], Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        **client_options: Any,
    ) -> None:
        super().__init__(app, identity=identity, max_body_bytes=max_body_bytes)
        self.client = client if client is not None else self.client_class(target, **client_options)


class Embedded(Middleware):
    """Decides in-process with the engine; ``policy`` is a path (hot-reloaded by default with
    ``PolicyHotReloader``), a ``CompiledPolicy`` or anything with ``current()``."""

    def __init__(
        self,
        app: Any,
        *,
        policy: str | os.PathLike[str] | CompiledPolicy | PolicySource,
        hot_reload: bool = True,
        replay_store: ReplayStore | AsyncReplayStore | None = None,
        replay_fail_open: bool = False,
        claim_names: ClaimNames = DEFAULT_CLAIM_NAMES,
        identity: Callable[[Any], Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(app, identity=identity, max_body_bytes=max_body_bytes)
        self.decider = EmbeddedDecider.open(
            policy,
            hot_reload=hot_reload,
            replay_store=replay_store,
            replay_fail_open=replay_fail_open,
            claim_names=claim_names,
        )

    def close(self) -> None:
        """Stop the hot reloader this middleware started (if any)."""
        self.decider.close()


class EmbeddedDecider:
    """Decides in-process: the server's adapter (``CheckInput`` → ``CheckRequest`` →
    ``RequestContext``), then the one ``extauthz.decider.Decider`` on the current policy.

    Fails closed: a request that cannot be described raises ``InvalidContext`` (400), any
    other failure is logged and becomes the shared internal-error denial
    (``outcome.internal_error``, 500).
    """

    def __init__(
        self,
        decider: Decider,
        claim_names: ClaimNames = DEFAULT_CLAIM_NAMES,
        stop: Callable[[], None] | None = None,
    ) -> None:
        from ..envoy.request import AdapterOptions, check_request_to_context

        self.decider = decider
        self.claim_names = claim_names
        self._stop = stop
        self._options = AdapterOptions(
            subject_claim=claim_names.subject,
            tenant_claim=claim_names.tenant,
            scopes_claim=claim_names.scopes,
        )
        self._to_context = check_request_to_context

    @classmethod
    def open(
        cls,
        policy: str | os.PathLike[str] | CompiledPolicy | PolicySource,
        *,
        hot_reload: bool,
        replay_store: ReplayStore | AsyncReplayStore | None,
        replay_fail_open: bool,
        claim_names: ClaimNames,
    ) -> EmbeddedDecider:
        """A decider on ``make_policy_source(policy)``; ``close()`` stops its hot reloader."""
        from ..decider import Decider  # the engine, only when embedded
        from ..policy.source import make_policy_source

        source, stop = make_policy_source(policy, hot_reload=hot_reload)
        return cls(Decider(source, replay_store, replay_fail_open), claim_names, stop)

    def close(self) -> None:
        """Stop the hot reloader ``open()`` started (if any)."""
        if self._stop is not None:
            self._stop()

    def context(self, inp: CheckInput) -> RequestContext:
        """Raises ``InvalidContext`` for a request that cannot be described (a 400)."""
        return self._to_context(build_check_request(inp, self.claim_names), self._options)

    def decide(self, inp: CheckInput) -> Decision:
        ctx = self._decode(inp)
        if isinstance(ctx, Outcome):
            return ctx.decision
        return self.decider.decide(ctx, TRANSPORT).decision

    async def decide_async(self, inp: CheckInput) -> Decision:
        ctx = self._decode(inp)
        if isinstance(ctx, Outcome):
            return ctx.decision
        return (await self.decider.decide_async(ctx, TRANSPORT)).decision

    def _decode(self, inp: CheckInput) -> RequestContext | Outcome:
        """The context, or the internal-error denial when describing failed for another reason
        than the request (``InvalidContext``, raised on: a 400)."""
        try:
            return self.context(inp)
        except InvalidContext:
            raise
        except Exception:
            return internal_error()
