"""Helpers for hot-reload tests: real policy files, requests, bounded waits."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extauthz.context import RequestContext

WAIT_S = 30.0  # a hang guard: waits fail after this instead of blocking; nothing is timed


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


CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"


def check_request(method: str = "GET", path: str = "/ping") -> Any:
    """A minimal Envoy CheckRequest, as Envoy's ext_authz filter sends it."""
    from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
    from google.protobuf import json_format

    http = {"id": "reload-test", "method": method, "path": path, "host": "api.example",
            "scheme": "http", "headers": {}}  # fmt: skip
    attrs = {
        "source": {"address": {"socketAddress": {"address": "10.0.0.7", "portValue": 4000}}},
        "request": {"http": http},
    }
    return json_format.ParseDict({"attributes": attrs}, CheckRequest())


class CheckLoop:
    """Sends gRPC Checks over the Unix socket back to back on a thread and records outcomes.

    Each outcome is ``(monotonic time, "ALLOW" | "BLOCK:<status>:<rule ids>" | "error:...")``.
    """

    def __init__(self, socket_path: str) -> None:
        import grpc
        from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self._stub = self._channel.unary_unary(
            CHECK_METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )
        self.outcomes: list[tuple[float, str]] = []
        self.versions: list[tuple[str, str]] = []  # (outcome, policyVersion) when reported
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def once(self) -> str:
        import grpc

        try:
            resp = self._stub(check_request(), timeout=2.0)
        except grpc.RpcError as exc:
            return f"error:{exc.code()}"
        if resp.status.code == 0:
            outcome = "ALLOW"
        else:
            body = json.loads(resp.denied_response.body)
            outcome = f"BLOCK:{resp.denied_response.status.code}:{','.join(body['ruleHits'])}"
        meta = resp.dynamic_metadata.fields
        if "policyVersion" in meta:
            self.versions.append((outcome, meta["policyVersion"].string_value))
        return outcome

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outcomes.append((time.monotonic(), self.once()))

    def __enter__(self) -> CheckLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._channel.close()

    def first_after(self, since: float, prefix: str) -> float | None:
        for at, outcome in list(self.outcomes):
            if at >= since and outcome.startswith(prefix):
                return at
        return None

    @property
    def errors(self) -> list[str]:
        return [o for _, o in self.outcomes if o.startswith("error")]


def http_json(url: str) -> Any:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # /health answers 503 with a JSON body too
        return json.loads(exc.read())


def http_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())
