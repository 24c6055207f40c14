"""What verifying a webhook and deriving its replay key costs (issue 24, class 5).

The key is read from the signed bytes whatever the content type (the payload parsed again,
orjson first) or is a SHA-256 of what the signature covers. This prints the whole decision
for a Stripe event (a signed ``id``: one parse) and a GitHub delivery (no id: one hash), and
path canonicalisation (the ``;`` check), best of 5 rounds. Compare two revisions by running
it with each on ``PYTHONPATH``; on a loaded machine the figures move by more than the change.

Run: ``PYTHONPATH=. .venv/bin/python bench/webhook_key_bench.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from extauthz.context import Body, HttpRequest, RequestContext
from extauthz.engine import evaluate
from extauthz.engine.canonical import _canonicalize
from extauthz.policy import load_policy_text
from extauthz.webhooks import sign

NOW = 1_767_225_600
POLICY = load_policy_text("""
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: s
    match: {method: POST, path: /s}
    webhook: {provider: stripe, secret: whsec_x, replayProtection: false}
  - id: g
    match: {method: POST, path: /g}
    webhook: {provider: github, secret: gh, replayProtection: false}
""")


def context(path: str, raw: bytes, headers: dict[str, str]) -> RequestContext:
    headers = {**headers, "content-type": "application/json"}
    body = Body(True, len(raw), raw=raw)
    request = HttpRequest("POST", path, headers, content_type="application/json", body=body)
    return RequestContext(request=request)


def best(fn: Callable[[], object], n: int) -> float:
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return min(rounds)


def main() -> None:
    event = {"id": "evt_1", "type": "invoice.paid", "data": {"object": {"items": list(range(50))}}}
    raw = json.dumps(event).encode()
    stripe = context("/s", raw, sign("stripe", "whsec_x", raw, timestamp=NOW))
    github = context(
        "/g", raw, {**sign("github", "gh", raw, timestamp=0), "x-github-event": "push"}
    )
    print(
        f"stripe webhook decision   {best(lambda: evaluate(POLICY, stripe, now=NOW), 3000):7.2f} us"
    )
    print(
        f"github webhook decision   {best(lambda: evaluate(POLICY, github, now=NOW), 3000):7.2f} us"
    )
    path = "/api/v1/users/42"
    print(f"canonicalize (uncached)   {best(lambda: _canonicalize(path), 100_000):7.3f} us")


if __name__ == "__main__":
    main()
