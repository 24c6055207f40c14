"""The hits the pipeline reports itself: an ambiguous path, an unmatched route, a body that
does not parse, repeats a key a contract reads or has a coding the checks cannot read, a value
the CEL rules cannot read, and the engine's own failure (``engine.pipeline``)."""

from __future__ import annotations

from ._kinds import CEL, CONTRACT, ENGINE, ROUTE, HitSet

(
    PATH_AMBIGUOUS,
    ROUTE_UNMATCHED,
    BODY_MALFORMED,
    REQUEST_MALFORMED,
    INTERNAL_ERROR,
    BODY_DUPLICATE,
    BODY_ENCODING,
) = CHECKS = tuple(
    HitSet((hit,), phase, explain, location=location)
    for hit, phase, explain, location in (
        ("request.path.ambiguous", ROUTE,
         "the path decodes to more than one route path (encoded slashes, dot segments, "
         "a ';' path parameter)", None),
        ("route.unmatched", ROUTE,
         "no route matches the method and path, and the policy blocks or monitors that",
         "defaults.unmatchedRouteAction"),  # the setting that makes it a hit
        ("request.body.malformed", CONTRACT,  # the body is the contract's input
         "the body does not parse as its content type says", None),
        ("request.malformed", CEL,  # one hit, instead of every CEL rule failing at once
         "a value the CEL rules read is not valid Unicode text (a lone surrogate such as "
         "\\ud800 in a JSON string, a header or a claim): refused as malformed", None),
        ("engine.internalError", ENGINE,
         "the engine failed on this request and blocked it (fail closed)", None),
        ("request.body.duplicateKey", CONTRACT,
         "the body repeats a key (JSON object key, form or multipart field) on a route whose "
         "contract or CEL rules read the body; upstreams differ on which value wins",
         "defaults.body.duplicateKeys"),
        ("request.body.encoding", CONTRACT,
         "the body's Content-Encoding cannot be inspected (or the policy refuses codings)",
         "defaults.body.contentEncoding"),
    )
)  # fmt: skip
