"""The hits the pipeline reports itself: an ambiguous path, an unmatched route, a body that
does not parse, and the engine's own failure (``engine.pipeline``)."""

from __future__ import annotations

from ._kinds import CONTRACT, ENGINE, ROUTE, HitSet

PATH_AMBIGUOUS = HitSet(
    name="",
    hits=("request.path.ambiguous",),
    phase=ROUTE,
    explain="the path decodes to more than one route path (encoded slashes, dot segments)",
)
ROUTE_UNMATCHED = HitSet(
    name="",
    hits=("route.unmatched",),
    phase=ROUTE,
    explain="no route matches the method and path, and the policy blocks or monitors that",
    location="defaults.unmatchedRouteAction",  # the setting that makes it a hit
)
BODY_MALFORMED = HitSet(
    name="",
    hits=("request.body.malformed",),
    phase=CONTRACT,  # the body is the contract's input; explain lists it there
    explain="the body does not parse as its content type says",
)
INTERNAL_ERROR = HitSet(
    name="",
    hits=("engine.internalError",),
    phase=ENGINE,
    explain="the engine failed on this request and blocked it (fail closed)",
)
CHECKS = (PATH_AMBIGUOUS, ROUTE_UNMATCHED, BODY_MALFORMED, INTERNAL_ERROR)
