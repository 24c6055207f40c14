"""Fixtures of the gRPC tests: a policy over ``tests/data/grpc/shop.proto`` (compiled at test
time) and helpers that build gRPC bodies and contexts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from _grpc_support import Ctx

from extauthz.context import RequestContext
from extauthz.policy import CompiledPolicy, load_policy

SHOP_POLICY = """\
policyVersion: "0.1"
defaults: {{unmatchedRouteAction: block}}
routes:
  - id: create-order
    match: {{path: /shop.v1.Orders/CreateOrder}}
    grpc: {{descriptorSetRef: {set}}}
    limits: {{maxJsonDepth: 8, maxArrayLength: 100}}
    vulnerability: {{pathTraversal: true}}
    rules:
      - id: tenant.binding
        type: cel
        config: {{expr: "request.body.tenant == request.headers['x-tenant']"}}
  - id: get-order
    grpc: {{descriptorSetRef: {set}, service: shop.v1.Orders, method: GetOrder}}
  - id: upload-items
    match: {{path: /shop.v1.Orders/UploadItems}}
    grpc: {{descriptorSetRef: {set}, streaming: firstMessage}}
  - id: chat
    match: {{path: /shop.v1.Orders/Chat}}
    grpc: {{descriptorSetRef: {set}}}
"""


@pytest.fixture(scope="session")
def shop_policy_file(shop_protos: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop_policy")
    (folder / "api.binpb").write_bytes(shop_protos.descriptor_set.read_bytes())
    path = folder / "policy.yaml"
    path.write_text(SHOP_POLICY.format(set="api.binpb"))
    return path


@pytest.fixture(scope="session")
def shop_policy(shop_policy_file: Path) -> CompiledPolicy:
    return load_policy(shop_policy_file)


@pytest.fixture(scope="session")
def messages(shop_policy: CompiledPolicy) -> dict[str, Any]:
    """The request message classes, by route id."""
    return {r.id: r.grpc.message_class for r in shop_policy.routes if r.grpc is not None}


@pytest.fixture
def grpc_ctx() -> Ctx:
    def make(
        body: bytes,
        path: str = "/shop.v1.Orders/CreateOrder",
        content_type: str = "application/grpc",
        headers: dict[str, str] | None = None,
        partial: bool = False,
    ) -> RequestContext:
        h = {"content-type": content_type, "x-tenant": "t1", "te": "trailers", **(headers or {})}
        raw = base64.b64encode(body).decode()
        b: dict[str, Any] = {"rawBase64": raw, "present": True, "sizeBytes": len(body)}
        if partial:
            b["partial"] = True
        return RequestContext.from_dict(
            {"request": {"method": "POST", "path": path, "headers": h, "body": b}}
        )

    return make
