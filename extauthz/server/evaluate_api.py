"""``POST /evaluate``: upstream ContractShield's sidecar call, on the server's policy.

    request   {"context": RequestContext}            (upstream's client SDK sends this)
    answer    {"decision": Decision, "durationMs": float}

Upstream's sidecar also takes ``"policy"`` from the caller; here that is refused with 400
unless the operator set ``ALLOW_REQUEST_POLICY`` (a caller-supplied policy lets any caller
allow itself). Allowed, such a policy is compiled *sealed* (no schema files, no environment
secrets: either would be an oracle on the server) and kept in a small cache keyed by its
bytes, so a caller that sends the same policy each time compiles it once.

Independent of the HTTP server: a handler passes the body bytes and sends what comes back.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Coroutine
from typing import Any

from cachetools import LRUCache

from .._exceptions import InvalidContext, InvalidPolicy
from .._json import COMPACT_ASCII
from ..context import RequestContext
from ..context_codec import fast_envelope, random_request_id, upstream_answer
from ..decider import Claim, Decider
from ..decision import Decision
from ..engine.model import CompiledPolicy
from ..outcome import INVALID_REQUEST
from .state import ServerState

KEYS = ("context", "policy", "options")
POLICY_CACHE_SIZE = 32
_cache: LRUCache[str, CompiledPolicy] = LRUCache(POLICY_CACHE_SIZE)


def _error(reason: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 400, {"error": reason, "code": INVALID_REQUEST, **extra}


def _caller_policy(state: ServerState, doc: Any) -> CompiledPolicy | tuple[int, dict[str, Any]]:
    from ..policy import load_policy_bytes

    if not state.config.allow_request_policy:
        return _error(
            "this server decides with its own policy: a request may not carry one "
            "(ALLOW_REQUEST_POLICY=true allows it; a caller-supplied policy lets any caller "
            "allow itself)"
        )
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    key = hashlib.sha256(data).hexdigest()  # sealed: the same bytes, the same policy
    policy = _cache.get(key)
    if policy is None:
        try:
            policy = load_policy_bytes(data, source="<request policy>", sealed=True)
        except InvalidPolicy as exc:
            return _error(
                "the request's policy is invalid",
                problems=[f"{p.path}: {p.reason}" if p.path else p.reason for p in exc.errors],
            )
        _cache[key] = policy
    return policy


async def evaluate(state: ServerState, decider: Decider, body: bytes) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) for one ``POST /evaluate`` body, decided by ``decider`` (the
    server's); never raises for bad input."""
    start = time.perf_counter()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return _error(f"body is not valid JSON: {exc}")
    if not isinstance(data, dict) or "context" not in data:
        return _error('expected {"context": {...}}')
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        return _error(f"unknown key {unknown[0]!r} (allowed: context, policy)")
    if data.get("options") is not None:
        return _error("options are not accepted: the server's settings apply")
    policy: CompiledPolicy | None = None
    if data.get("policy") is not None:
        compiled = _caller_policy(state, data["policy"])
        if isinstance(compiled, tuple):
            return compiled
        policy = compiled
    context = data["context"]
    try:
        if isinstance(context, dict) and not context.get("id"):
            context["id"] = random_request_id()  # every decision carries a request id
        ctx = RequestContext.from_dict(context)
    except InvalidContext as exc:
        state.metrics.observe_error(InvalidContext.code)
        return _error(f"context: {exc}")
    outcome = await decider.decide_async(ctx, "http", policy)
    duration = (time.perf_counter() - start) * 1000
    return 200, {"decision": outcome.decision.to_dict(), "durationMs": round(duration, 3)}


Answer = tuple[int, bytes]


def answer(
    state: ServerState, decider: Decider, body: bytes
) -> Answer | Coroutine[Any, Any, Answer]:
    """(status, answer bytes) for one ``POST /evaluate`` body, or a coroutine of them; never
    raises for bad input.

    ``{"context": ...}`` alone, in the common shape, is decoded by msgspec, decided without a
    coroutine unless a replay claim is due (``Decider.begin``, as ``/v1/evaluate``) and
    answered without the answer's dict (``context_codec``). Any other body goes through
    ``evaluate``, whose answer is the same JSON (``COMPACT_ASCII``).
    """
    start = time.perf_counter()
    ctx = fast_envelope(body, random_request_id)
    if ctx is None:
        return _plain(state, decider, body)
    decided = decider.begin(ctx, "http")
    if isinstance(decided, Claim):
        return _claimed(decided, start)
    return 200, _answer(decided.decision, start)


def _answer(decision: Decision, start: float) -> bytes:
    return upstream_answer(decision, round((time.perf_counter() - start) * 1000, 3))


async def _claimed(claim: Claim, start: float) -> Answer:
    return 200, _answer((await claim.outcome()).decision, start)


async def _plain(state: ServerState, decider: Decider, body: bytes) -> Answer:
    status, doc = await evaluate(state, decider, body)
    return status, COMPACT_ASCII.encode(doc).encode()
