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
from ..decision import BLOCK, Decision, RuleHit

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..policy import CompiledPolicy
    from ..policy.source import PolicySource

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # what is buffered for inspection (Envoy's max_request_bytes)
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"
POLICY_VIOLATION = "POLICY_VIOLATION"
PDP_UNAVAILABLE = "PDP_UNAVAILABLE"
ASGI_STATE_KEY = "contractshield_decision"
WSGI_ENVIRON_KEY = "contractshield.decision"

log = logging.getLogger("extauthz.middleware")


@dataclass(slots=True, frozen=True)
class DenyResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def deny_response(decision: Decision) -> DenyResponse:
    """BLOCK → the decision's status and the same JSON body Envoy returns."""
    body = {
        "error": decision.reason or "request blocked by policy",
        "code": POLICY_VIOLATION,
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


def internal_error_decision() -> Decision:
    """The embedded engine failed: deny (fail closed), the traceback is in the log."""
    return Decision(
        BLOCK,
        500,
        "internal error while deciding",
        (RuleHit("middleware.internalError", "high", "see the application log"),),
    )


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class EmbeddedDecider:
    """Decides in-process: the server's adapter, then the engine, on the current policy.

    Fails closed: a request that cannot be described raises ``InvalidContext`` (400), any
    other failure is logged and becomes ``internal_error_decision()``.
    """

    def __init__(
        self,
        policy_source: PolicySource,
        *,
        replay_store: Any = None,
        replay_fail_open: bool = False,
        claim_names: ClaimNames = DEFAULT_CLAIM_NAMES,
        stop: Callable[[], None] | None = None,
    ) -> None:
        from ..engine import evaluate, evaluate_async
        from ..envoy.request import AdapterOptions, check_request_to_context

        self.policy_source = policy_source
        self.replay_store = replay_store
        self.replay_fail_open = replay_fail_open
        self.claim_names = claim_names
        self._stop = stop
        self._options = AdapterOptions(
            subject_claim=claim_names.subject,
            tenant_claim=claim_names.tenant,
            scopes_claim=claim_names.scopes,
        )
        self._to_context = check_request_to_context
        self._evaluate = evaluate
        self._evaluate_async = evaluate_async

    @classmethod
    def open(
        cls,
        policy: str | CompiledPolicy | PolicySource,
        *,
        hot_reload: bool,
        replay_store: Any,
        replay_fail_open: bool,
        claim_names: ClaimNames,
    ) -> EmbeddedDecider:
        """A decider on ``make_policy_source(policy)``; ``close()`` stops its hot reloader."""
        from ..policy.source import make_policy_source  # the engine, only when embedded

        source, stop = make_policy_source(policy, hot_reload=hot_reload)
        return cls(
            source,
            replay_store=replay_store,
            replay_fail_open=replay_fail_open,
            claim_names=claim_names,
            stop=stop,
        )

    def close(self) -> None:
        """Stop the hot reloader ``open()`` started (if any)."""
        if self._stop is not None:
            self._stop()

    def context(self, inp: CheckInput) -> RequestContext:
        return self._to_context(build_check_request(inp, self.claim_names), self._options)

    def decide(self, inp: CheckInput) -> Decision:
        try:
            return self._evaluate(
                self.policy_source.current(),
                self.context(inp),
                replay_store=self.replay_store,
                replay_fail_open=self.replay_fail_open,
            )
        except InvalidContext:
            raise  # the request, not the engine: 400
        except Exception:
            log.exception("embedded policy evaluation failed")
            return internal_error_decision()

    async def decide_async(self, inp: CheckInput) -> Decision:
        try:
            return await self._evaluate_async(
                self.policy_source.current(),
                self.context(inp),
                replay_store=self.replay_store,
                replay_fail_open=self.replay_fail_open,
            )
        except InvalidContext:
            raise  # the request, not the engine: 400
        except Exception:
            log.exception("embedded policy evaluation failed")
            return internal_error_decision()
