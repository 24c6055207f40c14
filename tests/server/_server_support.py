"""Helpers for server tests: CheckRequest builders, signed webhooks, an in-process server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO_ROOT / "policies" / "demo.yaml"
STRIPE_SECRET = b"whsec_demo_contractshield"
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"


def check_request(
    method: str = "GET",
    path: str = "/healthz",
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    claims: dict[str, Any] | None = None,
) -> CheckRequest:
    http: dict[str, Any] = {
        "id": f"req-{time.monotonic_ns()}",
        "method": method,
        "path": path,
        "host": "api.example",
        "scheme": "http",
        "headers": dict(headers or {}),
    }
    attrs: dict[str, Any] = {
        "source": {"address": {"socketAddress": {"address": "10.0.0.7", "portValue": 4000}}},
        "request": {"http": http},
    }
    if claims is not None:
        attrs["metadataContext"] = {
            "filterMetadata": {"envoy.filters.http.jwt_authn": {"jwt_payload": claims}}
        }
    req = json_format.ParseDict({"attributes": attrs}, CheckRequest())
    if body is not None:
        req.attributes.request.http.raw_body = body
        req.attributes.request.http.headers["content-length"] = str(len(body))
    return req


def stripe_headers(payload: bytes, *, secret: bytes = STRIPE_SECRET) -> dict[str, str]:
    ts = int(time.time())
    sig = hmac.new(secret, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={ts},v1={sig}", "content-type": "application/json"}


def stripe_event(event_id: str) -> bytes:
    return json.dumps({"id": event_id, "type": "invoice.paid", "object": "event"}).encode()


def check_stub(channel: grpc.aio.Channel) -> Callable[..., Awaitable[CheckResponse]]:
    return channel.unary_unary(
        CHECK_METHOD,
        request_serializer=CheckRequest.SerializeToString,
        response_deserializer=CheckResponse.FromString,
    )
