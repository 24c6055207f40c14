"""Per-request cost of requests decoded the way an OpenAPI description serializes them.

On routes generated from ``tests/policy/data/openapi/forms30.yaml`` (Stripe-shaped): a JSON
body (the baseline: the same contract path as before), a URL-encoded form with bracketed keys
(coercion, nesting, arrays), the same form to a route without a contract (the form decoder
alone), a multipart upload with a 4 KiB file (the python-multipart parse and the per-part
checks), a query with a deepObject parameter, and the multipart parsers compared on the same
body (python-multipart, the one used, and streaming-form-data when installed). Medians of
interleaved rounds, in µs. Run: ``.venv/bin/python bench/openapi_decode.py``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.context import Body, HttpRequest, RequestContext  # noqa: E402
from extauthz.engine import evaluate  # noqa: E402
from extauthz.engine.decoders.multipart import decode as decode_multipart  # noqa: E402
from extauthz.policy import load_policy  # noqa: E402

SPEC = ROOT / "tests" / "policy" / "data" / "openapi" / "forms30.yaml"
POLICY = """
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes:
  - {id: plain-form, match: {method: POST, path: /plain}}
openapi: {spec: ./forms30.yaml}
"""
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "bench-b0undary"
FORM_BODY = urllib.parse.urlencode(
    [("amount", "2000"), ("currency", "usd"), ("capture", "true"),
     ("metadata[order_id]", "6735"), ("metadata[note]", "first order"),
     ("shipping[name]", "Jo"), ("shipping[address][line1]", "1 Main St"),
     ("expand[]", "customer"), ("expand[]", "invoice"),
     ("items[0][price]", "p_1"), ("items[0][quantity]", "2")]
).encode()  # fmt: skip
JSON_BODY = b'{"n": 42}'


def _part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        head += f'; filename="{filename}"'
    head += "\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
    return f"--{BOUNDARY}\r\n{head}\r\n".encode() + value + b"\r\n"


MULTIPART_BODY = (
    _part("purpose", b"dispute_evidence")
    + _part("file", bytes(range(256)) * 3, "scan.png", "image/png")
    + _part("file_link_data[create]", b"true")
    + _part("expand[]", b"file_link")
    + f"--{BOUNDARY}--\r\n".encode()
)
MULTIPART_4K = (
    _part("purpose", b"dispute_evidence")
    + _part("file", bytes(range(256)) * 16, "scan.png", "image/png")
    + f"--{BOUNDARY}--\r\n".encode()
)


def ctx(method: str, path: str, raw: bytes = b"", ctype: str | None = None,
        query: dict[str, str] | None = None) -> RequestContext:  # fmt: skip
    headers = {"content-type": ctype} if ctype else {}
    body = Body(True, len(raw), None, raw) if raw else Body()
    return RequestContext(HttpRequest(method, path, headers, query or {}, ctype, body=body))


def per_call(fn: Callable[[], object], n: int) -> float:
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=2000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-decode-"))
    try:
        shutil.copy(SPEC, tmp / "forms30.yaml")
        (tmp / "p.yaml").write_text(POLICY)
        policy = load_policy(tmp / "p.yaml")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mp = f"multipart/form-data; boundary={BOUNDARY}"
    cases: dict[str, RequestContext] = {
        "JSON body (baseline)": ctx("POST", "/v1/either", JSON_BODY, "application/json"),
        "form, bracketed keys": ctx("POST", "/v1/charges", FORM_BODY, FORM),
        "same form, no contract": ctx("POST", "/plain", FORM_BODY, FORM),
        "multipart, 768 B file": ctx("POST", "/v1/files", MULTIPART_BODY, mp),
        "query, deepObject": ctx(
            "GET", "/v1/charges", query={"created[gte]": "1690000000", "limit": "3"}
        ),
    }
    for name, c in cases.items():
        d = evaluate(policy, c)
        assert d.action == "ALLOW", (name, d.reason)
    parsers: dict[str, Callable[[], object]] = {
        "python-multipart (used)": lambda: decode_multipart(MULTIPART_4K, mp, 32, 1 << 20),
    }
    try:
        from streaming_form_data import StreamingFormDataParser
        from streaming_form_data.targets import ValueTarget

        def sfd() -> object:
            parser = StreamingFormDataParser({"content-type": mp})
            targets = {"purpose": ValueTarget(), "file": ValueTarget()}
            for key, target in targets.items():
                parser.register(key, target)
            parser.data_received(MULTIPART_4K)
            return targets

        parsers["streaming-form-data"] = sfd
    except ImportError:
        pass
    results: dict[str, list[float]] = {k: [] for k in [*cases, *parsers]}
    for _ in range(args.rounds):
        for name, c in cases.items():
            results[name].append(per_call(lambda c=c: evaluate(policy, c), args.n))
        for name, fn in parsers.items():
            results[name].append(per_call(fn, max(1, args.n // 4)))
    base = statistics.median(results["JSON body (baseline)"])
    print(f"evaluate() per request, median of {args.rounds} interleaved rounds of {args.n}:")
    for name in cases:
        med = statistics.median(results[name])
        print(f"  {name:28s} {med:8.1f} µs   {med / base:5.2f}x the JSON baseline")
    print("multipart parsers, 4 KiB file + 1 field:")
    for name in parsers:
        print(f"  {name:28s} {statistics.median(results[name]):8.1f} µs")


if __name__ == "__main__":
    main()
