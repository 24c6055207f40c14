"""Helpers for hot-reload tests: real policy files, requests, bounded waits."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from extauthz.context import RequestContext

WAIT_S = 5.0  # generous bound for waits that are not themselves the thing being measured


def policy_yaml(*, ping_expr: str = "true", schema_ref: str | None = None, marker: str = "") -> str:
    """A small policy: GET /ping decided by one CEL rule, POST /items checked by a schema."""
    contract = (
        f"""
    contract:
      requestSchemaRef: {schema_ref}
      rejectUnknownFields: true"""
        if schema_ref
        else ""
    )
    return f"""# {marker}
policyVersion: "0.1"
defaults:
  mode: enforce
  unmatchedRouteAction: block
routes:
  - id: ping
    match: {{method: GET, path: /ping}}
    rules:
      - id: ping.gate
        type: cel
        action: block
        severity: high
        config: {{expr: "{ping_expr}"}}
  - id: items
    match: {{method: POST, path: /items}}{contract}
"""


SCHEMA_V1 = """{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {"name": {"type": "string"}},
  "required": ["name"]
}
"""
SCHEMA_V2 = SCHEMA_V1.replace('"required": ["name"]', '"required": ["name", "owner"]').replace(
    '"name": {"type": "string"}', '"name": {"type": "string"}, "owner": {"type": "string"}'
)


def ping_ctx() -> RequestContext:
    return RequestContext.from_dict(
        {"request": {"method": "GET", "path": "/ping", "headers": {}}, "id": "t-ping"}
    )


def items_ctx(body: dict[str, object]) -> RequestContext:
    import json

    raw = json.dumps(body).encode()
    return RequestContext.from_dict(
        {
            "id": "t-items",
            "request": {
                "method": "POST",
                "path": "/items",
                "headers": {"content-type": "application/json"},
                "contentType": "application/json",
                "body": {"present": True, "sizeBytes": len(raw), "json": {"sample": body}},
            },
        }
    )


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S) -> float:
    """Poll until true; returns the seconds it took, fails the test after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def write_atomic(path: Path, text: str) -> None:
    """What editors and config tools do: write a temp file beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
