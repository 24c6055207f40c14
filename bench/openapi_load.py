"""Policy load time with a large OpenAPI document (``openapi: {spec: ...}``), by stage.

A generated 3.0 document with N operations (each a body schema with nested ``$ref``s into a
shared components file, three typed parameters) is loaded as a policy; the figures split the
load into YAML parsing, ``openapi-spec-validator`` and the rest (``referencing`` lookups,
bundling, 3.0 translation, validator compilation). Loading happens once per policy (re)load,
never per request. Run: ``.venv/bin/python bench/openapi_load.py [-n 200]``;
``--plain-metaschema`` checks every schema whole (``SHARE_METASCHEMA_CHECKS = False``), as
before the load shared its metaschema checks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.policy import _compile, load_policy  # noqa: E402
from extauthz.policy._openapi import OpenApiLoader  # noqa: E402


def spec(n: int) -> tuple[dict[str, object], dict[str, object]]:
    common = {
        "components": {
            "schemas": {
                "Address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["zip"],
                },
                "Money": {
                    "type": "object",
                    "properties": {
                        "amount": {"type": "number", "minimum": 0},
                        "currency": {"type": "string", "enum": ["EUR", "USD"]},
                    },
                },
            }
        }
    }
    paths: dict[str, object] = {}
    schemas: dict[str, object] = {}
    for i in range(n):
        schemas[f"Req{i}"] = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "nullable": True, "maxLength": 80},
                "address": {"$ref": "./common.yaml#/components/schemas/Address"},
                "price": {"$ref": "./common.yaml#/components/schemas/Money"},
                "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            },
            "required": ["name"],
        }
        paths[f"/svc{i}/items/{{id}}"] = {
            "post": {
                "operationId": f"op{i}",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
                    {"name": "x-trace", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/Req{i}"}}
                    },
                },
                "responses": {"200": {"description": "ok"}},
            }
        }
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "large", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return doc, common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="operations")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plain-metaschema", action="store_true", help="no shared checks")
    args = parser.parse_args()
    _compile.SHARE_METASCHEMA_CHECKS = not args.plain_metaschema
    doc, common = spec(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "openapi.yaml").write_text(yaml.safe_dump(doc))
        (d / "common.yaml").write_text(yaml.safe_dump(common))
        (d / "policy.yaml").write_text(
            'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./openapi.yaml}\n'
        )
        size = (d / "openapi.yaml").stat().st_size
        print(f"{args.n} operations, {size / 1024:.0f} KiB of YAML; seconds per stage, "
              f"{args.rounds} rounds; metaschema checks "
              f"{'whole' if args.plain_metaschema else 'shared'}")  # fmt: skip
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            from extauthz.policy._loader import parse_schema_file

            parse_schema_file((d / "openapi.yaml").read_bytes(), "openapi.yaml")
            t1 = time.perf_counter()
            OpenApiLoader(d, 1 << 26)._validate(
                doc, (d / "openapi.yaml").as_uri(), d / "openapi.yaml", "3.0"
            )
            t2 = time.perf_counter()
            policy = load_policy(d / "policy.yaml")
            t3 = time.perf_counter()
            assert len(policy.route_ids) == args.n
            total = t3 - t2
            print(
                f"parse {t1 - t0:6.3f}   openapi-spec-validator {t2 - t1:6.3f}   "
                f"whole policy load {total:6.3f} (of which the rest "
                f"{total - (t2 - t0):6.3f})"
            )


if __name__ == "__main__":
    main()
