"""Engine test helpers: build contexts tersely, load the demo policy once."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extauthz.context import Body, BodyJson, HttpRequest, Identity, RequestContext
from extauthz.engine import evaluate
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import load_policy

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"


def build_ctx(
    method: str = "GET",
    path: str = "/",
    *,
    body: Any = None,
    raw: bytes | str | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    identity: Identity | None = None,
    partial: bool = False,
    size_bytes: int | None = None,
    sample: Any = ...,
) -> RequestContext:
    hdrs = dict(headers or {})
    if body is not None:
        raw = json.dumps(body)
        content_type = content_type or "application/json"
    if isinstance(raw, str):
        raw = raw.encode()
    if content_type:
        hdrs.setdefault("content-type", content_type)
    b = Body(
        present=raw is not None or sample is not ...,
        size_bytes=size_bytes if size_bytes is not None else len(raw or b""),
        raw=raw,
        json=BodyJson(sample) if sample is not ... else None,
        partial=partial,
    )
    return RequestContext(
        request=HttpRequest(
            method=method,
            path=path,
            headers=hdrs,
            query=query or {},
            content_type=content_type,
            body=b,
        ),
        identity=identity or Identity(),
        id="req-1",
    )


Request = tuple[str, str, dict[str, Any]]  # method, path, build_ctx's keywords (+ "redacted")


def decide_all(policy: CompiledPolicy, requests: list[Request]) -> list[tuple[Any, ...]]:
    """(action, status, hits) for each request: what two compiled forms of one policy must
    agree on. ``redacted: True`` marks the body sample redacted (a decision-log replay)."""
    out = []
    for method, path, kw in requests:
        kw = dict(kw)
        redacted = kw.pop("redacted", False)
        ctx = build_ctx(method, path, **kw)
        if redacted:
            body = ctx.request.body
            body = dataclasses.replace(body, json=dataclasses.replace(body.json, redacted=True))
            ctx = dataclasses.replace(ctx, request=dataclasses.replace(ctx.request, body=body))
        d = evaluate(policy, ctx)
        out.append((d.action, d.status_code, [(h.id, h.severity, h.message) for h in d.rule_hits]))
    return out


@pytest.fixture
def ctx() -> Callable[..., RequestContext]:
    return build_ctx


@pytest.fixture(scope="session")
def demo() -> CompiledPolicy:
    return load_policy(DEMO)
