"""What a decision door answers with: ``Outcome``, and the two denials every door shares.

Light on purpose (no engine, no gRPC): the embedded middleware imports it without loading the
engine, and the Envoy encoders import the error codes from here.

    failure                          status  body code          rule hit
    request cannot be converted      400     INVALID_REQUEST    request.invalid
    any internal error               500     INTERNAL_ERROR     server.internalError

Every door (gRPC, Envoy HTTP mode, ``/v1/evaluate``, ``/evaluate``, the embedded middleware)
answers an internal error with ``internal_error()``: the same rule hit, status and body code,
an error id in the reason and in the log line next to the traceback.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

from ._frozen import frozen_dataclass
from .context import Identity
from .decision import BLOCK, Decision, DecisionMetadata, RuleHit

log = logging.getLogger("extauthz.server")

# Error codes in denial bodies (stable, documented in docs/envoy.md).
POLICY_VIOLATION = "POLICY_VIOLATION"
INVALID_REQUEST = "INVALID_REQUEST"
INTERNAL_ERROR = "INTERNAL_ERROR"

INTERNAL_ERROR_HIT = "server.internalError"
INVALID_REQUEST_HIT = "request.invalid"
INTERNAL_ERROR_STATUS = 500
INVALID_REQUEST_STATUS = 400


@frozen_dataclass
class Outcome:
    """A decision and how a door should word it."""

    decision: Decision
    error_code: str = POLICY_VIOLATION
    # False when the decision depends on more than the request (webhook replay state): the
    # client SDK must not cache it (``cache: no-store`` in dynamic metadata).
    cacheable: bool = True


def invalid_request(reason: str, request_id: str | None = None) -> Outcome:
    """A request we could not turn into a context: a deterministic 400 denial."""
    rid = request_id or uuid.uuid4().hex
    decision = Decision(
        BLOCK,
        INVALID_REQUEST_STATUS,
        f"invalid request: {reason}",
        (RuleHit(INVALID_REQUEST_HIT, "high", reason),),
        metadata=DecisionMetadata(request_id=rid),
    )
    return Outcome(decision, INVALID_REQUEST)


def log_internal_error(where: str, request_id: str | None = None) -> str:
    """Log the exception being handled under a fresh error id (returned): the id goes to the
    client, the traceback stays in the log."""
    error_id = os.urandom(6).hex()
    if request_id is None:
        log.exception("internal error %s (error id %s)", where, error_id)
    else:
        log.exception("internal error %s (error id %s, request id %s)", where, error_id, request_id)
    return error_id


def internal_error(request_id: str | None = None) -> Outcome:
    """Log the exception being handled and deny with 500: the one internal-error denial."""
    error_id = log_internal_error("while deciding", request_id)
    decision = Decision(
        BLOCK,
        INTERNAL_ERROR_STATUS,
        f"internal error (error id {error_id})",
        (RuleHit(INTERNAL_ERROR_HIT, "high", f"error id {error_id}"),),
        metadata=DecisionMetadata(request_id=request_id or uuid.uuid4().hex),
    )
    return Outcome(decision, INTERNAL_ERROR)


def error_code(decision: Decision) -> str:
    """The body code of a denial known only as a ``Decision`` (the middleware's, a remote
    PDP's): the shared denials keep their own code, every other denial is the policy's."""
    hits = decision.rule_hits
    if len(hits) == 1:
        if hits[0].id == INTERNAL_ERROR_HIT:
            return INTERNAL_ERROR
        if hits[0].id == INVALID_REQUEST_HIT:
            return INVALID_REQUEST
    return POLICY_VIOLATION


T_co = TypeVar("T_co", covariant=True)


class DecisionEncoder(Protocol[T_co]):
    """An Envoy encoder: a decision, in the words of its error code and cacheability."""

    def __call__(
        self,
        decision: Decision,
        identity: Identity | None,
        *,
        error_code: str,
        cacheable: bool,
        grpc: bool,
    ) -> T_co: ...


def outcome_encoder(
    encode: DecisionEncoder[T_co],
) -> Callable[[Outcome, Identity | None, bool], T_co]:
    """A door's ``encode`` from an Envoy encoder: the outcome's decision, error code and
    cacheability passed on (``grpc``: the request was a gRPC call)."""

    def from_outcome(outcome: Outcome, identity: Identity | None, grpc: bool = False) -> T_co:
        return encode(
            outcome.decision,
            identity,
            error_code=outcome.error_code,
            cacheable=outcome.cacheable,
            grpc=grpc,
        )

    return from_outcome
