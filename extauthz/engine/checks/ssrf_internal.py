"""SSRF to internal addresses: a URL (anywhere) or a host (in named fields) that resolves to a
private, loopback, link-local or metadata address without DNS (``engine.ssrf``)."""

from __future__ import annotations

from ..ssrf import URL_TRIGGERS, looks_like_url, ssrf_reason
from ._kinds import Detector


def _ssrf_named(value: str) -> str | None:
    return ssrf_reason(value, bare_host=True)


def _ssrf_anywhere(value: str) -> str | None:
    return ssrf_reason(value, bare_host=False) if looks_like_url(value) else None


EXPLAIN = "a URL or host naming an internal address the upstream could be made to call"
# URL_TRIGGERS: what looks_like_url needs (ssrf.py says why). On a field the policy names, any
# value reads as a host name ("42" is the address 0.0.0.42): no gate there.
CHECK = Detector("ssrfInternal", "vulnerability.ssrfInternal", True, EXPLAIN,
                 strings=_ssrf_anywhere, string_triggers=URL_TRIGGERS,
                 named_strings=_ssrf_named)  # fmt: skip
