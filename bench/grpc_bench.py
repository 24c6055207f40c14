"""The cost of a gRPC request's body checks: framing, protobuf decoding, the unknown-field
walk, protovalidate and the JSON mapping, then the whole decision, for a typical unary
message (``tests/data/grpc/shop.proto``'s CreateOrderRequest: 6 scalar fields, 5 items, 2
labels; ~130 bytes) and a large one (50 items, the rule's maximum).

Each line: median microseconds per call over ``--rounds`` rounds of ``--number`` calls.

    decode+map       ProtoMethod.decode without constraints (parse, walk, MessageToDict)
    decode+validate  the same with protovalidate (what a route with buf.validate rules costs)
    pipeline         evaluate() of the whole request (framing, every phase, the Decision)
    pipeline JSON    the same message as a JSON body on a JSON-Schema route, for comparison

Run: ``.venv/bin/python bench/grpc_bench.py [--rounds 7] [--number 2000]`` (needs grpcio-tools
for the proto, protovalidate for the constraints).
"""

from __future__ import annotations

import argparse
import base64
import importlib.resources
import json
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.context import RequestContext  # noqa: E402
from extauthz.engine.pipeline import evaluate  # noqa: E402
from extauthz.policy import load_policy  # noqa: E402

POLICY = """\
policyVersion: "0.1"
routes:
  - id: create
    match: {path: /shop.v1.Orders/CreateOrder}
    grpc: {descriptorSetRef: api.binpb%s}
    rules:
      - {id: tenant, type: cel, config: {expr: "request.body.tenant == request.headers['x-tenant']"}}
  - id: create-json
    match: {method: POST, path: /json/orders}
    contract:
      rejectUnknownFields: true
      requestSchema:
        type: object
        properties:
          tenant: {type: string}
          customer_email: {type: string, format: email}
          note: {type: string}
          items:
            type: array
            maxItems: 50
            items:
              type: object
              properties: {sku: {type: string, minLength: 1}, quantity: {type: integer}}
          labels: {type: object, additionalProperties: {type: string}}
    rules:
      - {id: tenant, type: cel, config: {expr: "request.body.tenant == request.headers['x-tenant']"}}
"""


def compile_set(folder: Path) -> Path:
    from grpc_tools import protoc

    src = ROOT / "tests" / "data" / "grpc"
    out = folder / "api.binpb"
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{src}", f"-I{well_known}", "--include_imports",
            f"--descriptor_set_out={out}", str(src / "shop.proto")]  # fmt: skip
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return out


def timeit(fn: Callable[[], object], rounds: int, number: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


def ctx(path: str, body: bytes, content_type: str) -> RequestContext:
    headers = {"content-type": content_type, "x-tenant": "t1"}
    raw = base64.b64encode(body).decode()
    b = {"rawBase64": raw, "present": True, "sizeBytes": len(body)}
    return RequestContext.from_dict(
        {"request": {"method": "POST", "path": path, "headers": headers, "body": b}}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="grpc-bench-"))
    compile_set(folder)
    policies = {}
    for name, extra in (("validate", ""), ("plain", ", protovalidate: false")):
        (folder / f"{name}.yaml").write_text(POLICY % extra)
        policies[name] = load_policy(folder / f"{name}.yaml")
    method = policies["validate"].routes[0].grpc
    plain = policies["plain"].routes[0].grpc
    cls = method.message_class
    for label, n_items in (("typical", 5), ("large", 50)):
        msg = cls(
            tenant="t1",
            customer_email="ann@example.com",
            note="leave at the door",
            items=[{"sku": f"SKU-{i}", "quantity": 1 + i % 9} for i in range(n_items)],
            labels={"channel": "web", "campaign": "spring"},
        )
        payload = msg.SerializeToString()
        framed = b"\x00" + struct.pack(">I", len(payload)) + payload
        from google.protobuf import json_format

        as_json = json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True))
        grpc_ctx = ctx("/shop.v1.Orders/CreateOrder", framed, "application/grpc")
        json_ctx = ctx("/json/orders", as_json.encode(), "application/json")
        assert evaluate(policies["validate"], grpc_ctx).action == "ALLOW"
        number = args.number if n_items < 50 else max(args.number // 20, 10)
        print(f"{label}: {len(payload)} bytes protobuf, {len(as_json)} bytes JSON")
        rows = (
            ("decode+map", lambda p=payload: plain.decode(p, 32)),
            ("decode+validate", lambda p=payload: method.decode(p, 32)),
            ("pipeline", lambda c=grpc_ctx: evaluate(policies["validate"], c)),
            ("pipeline JSON", lambda c=json_ctx: evaluate(policies["validate"], c)),
        )
        for name, fn in rows:
            print(f"  {name:16} {timeit(fn, args.rounds, number):8.1f} us")


if __name__ == "__main__":
    main()
