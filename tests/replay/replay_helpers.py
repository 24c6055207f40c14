"""Helpers for replay tests: signed Stripe webhooks as Envoy CheckRequests, gRPC health, HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

STRIPE_SECRET = b"whsec_demo_contractshield"  # the demo policy's demo-only secret
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def stripe_webhook(event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A Stripe event body and its valid ``stripe-signature`` header."""
    payload = json.dumps(
        {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": "invoice.paid", "object": "event"}
    ).encode()
    ts = int(time.time())
    sig = hmac.new(STRIPE_SECRET, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"stripe-signature": f"t={ts},v1={sig}", "content-type": "application/json"}


def check_request(
    method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> CheckRequest:
    http: dict[str, Any] = {"id": uuid.uuid4().hex, "method": method, "path": path,
                            "host": "api.example", "scheme": "https",
                            "headers": dict(headers or {})}  # fmt: skip
    attrs = {
        "source": {"address": {"socketAddress": {"address": "10.0.0.7", "portValue": 4000}}},
        "request": {"http": http},
    }
    req = json_format.ParseDict({"attributes": attrs}, CheckRequest())
    if body is not None:
        req.attributes.request.http.raw_body = body
        req.attributes.request.http.headers["content-length"] = str(len(body))
    return req


class Pdp:
    """A gRPC client of one PDP over its Unix socket: Check and Health."""

    def __init__(self, socket_path: str) -> None:
        self.channel = grpc.insecure_channel(f"unix:{socket_path}")
        self._check = self.channel.unary_unary(
            CHECK_METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def check(self, req: CheckRequest) -> tuple[int, list[str]]:
        """(HTTP status Envoy would answer, rule ids); 200 and [] for an allowed request."""
        resp = self._check(req, timeout=5)
        if resp.status.code == 0:
            return 200, []
        return resp.denied_response.status.code, json.loads(resp.denied_response.body)["ruleHits"]

    def webhook(self, event_id: str | None = None) -> tuple[int, list[str]]:
        body, headers = stripe_webhook(event_id)
        return self.check(check_request("POST", "/webhooks/stripe", headers=headers, body=body))

    def health(self, service: str = AUTHZ_SERVICE) -> int:
        return int(
            self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        )

    def close(self) -> None:
        self.channel.close()


def http(url: str, data: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) for GET, or POST when ``data`` is given."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample from a Prometheus exposition, parsed with prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError(f"{name}{labels} not in the exposition")
