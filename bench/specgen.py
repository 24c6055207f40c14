"""Large OpenAPI descriptions shaped like real ones, generated from a seed.

Real API descriptions are data files from other people's repositories; the tests and benches
need their shape, not their text. Two shapes, each deterministic for a seed (same seed, same
bytes):

- ``stripe_like``: OpenAPI 3.0.0, ~470 operations, ~4 MB of YAML. Form bodies
  (``application/x-www-form-urlencoded`` with ``encoding`` entries, nested objects, ``anyOf``
  branches, ``metadata`` maps), ``deepObject`` query parameters (``expand[]`` arrays, ``created``
  as ``anyOf [range object, integer]``, and plain ``object`` ones), a few ``multipart/form-data``
  uploads, ~500 shared component schemas with ``$ref`` chains several levels deep, expandable
  fields (``anyOf [string, $ref]``), ``nullable``, enums, markdown descriptions.
- ``github_like``: OpenAPI 3.0.3, ~1,000 operations, ~10 MB of YAML. JSON bodies, shared
  ``components/parameters`` (``owner``, ``repo``, ``per-page``) and ``components/responses``,
  path templates several parameters deep, large ``components/examples``.

Options switch off what the policy loader refuses today (``object_parameters``: plain object
query parameters), so a test can load the rest. Used by ``bench/openapi_load.py``,
``bench/reload_under_load.py`` and the tests (import ``bench.specgen``). Run:
``python bench/specgen.py stripe -o /tmp/stripe-like.yaml [--seed 1] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

_WORDS = [
    "account",
    "amount",
    "balance",
    "capture",
    "card",
    "charge",
    "coupon",
    "currency",
    "customer",
    "discount",
    "dispute",
    "event",
    "fee",
    "file",
    "invoice",
    "item",
    "line",
    "mandate",
    "metadata",
    "payment",
    "payout",
    "plan",
    "price",
    "product",
    "quote",
    "refund",
    "review",
    "session",
    "setup",
    "source",
    "subscription",
    "tax",
    "token",
    "transfer",
    "usage",
    "value",
    "owner",
    "repo",
    "issue",
    "label",
    "branch",
    "commit",
    "deployment",
    "environment",
    "hook",
    "member",
    "team",
    "release",
    "asset",
    "artifact",
    "runner",
    "workflow",
    "job",
    "check",
    "status",
    "comment",
    "reaction",
    "project",
    "column",
    "card",
]
_WORDS = list(dict.fromkeys(_WORDS))  # distinct, in order


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def word(self) -> str:
        return self.r.choice(_WORDS)

    def words(self, n: int) -> list[str]:
        """``n`` distinct words (an ``enum`` must not repeat itself)."""
        return self.r.sample(_WORDS, n)

    def name(self, n: int = 2) -> str:
        return "_".join(self.word() for _ in range(n))

    def text(self, lo: int = 8, hi: int = 40) -> str:
        """A markdown-ish description: emphasis, links, code, '&' and '*' as prose has them."""
        parts = []
        for _ in range(self.r.randint(lo, hi)):
            w = self.word()
            roll = self.r.random()
            if roll < 0.04:
                w = f"*{w}*"
            elif roll < 0.07:
                w = f"`{w}`"
            elif roll < 0.09:
                w = f"[{w}](https://docs.example.com/{w})"
            elif roll < 0.1:
                w = f"{w} & {self.word()}"
            parts.append(w)
        return " ".join(parts).capitalize() + "."


# -- Stripe-shaped ------------------------------------------------------------------------------


def stripe_like(
    seed: int = 1,
    *,
    operations: int = 470,
    schemas: int = 500,
    object_parameters: bool = True,
    multipart: bool = True,
) -> Doc:
    """A Stripe-shaped 3.0.0 description (see the module docstring)."""
    g = _Gen(seed)
    names = [f"{g.name()}_{i}" for i in range(schemas)]
    comps: dict[str, Any] = {}
    for i, name in enumerate(names):
        comps[name] = _stripe_component(g, name, i, names)
    paths: dict[str, Any] = {}
    n = 0
    k = 0
    while n < operations:
        res = f"{g.word()}s_{k}"
        target = names[g.r.randrange(len(names))]
        item: dict[str, Any] = {
            "get": _stripe_list(g, res, target, object_parameters and k % 23 == 5),
            "post": _stripe_create(g, res, target, multipart and k % 60 == 7),
        }
        paths[f"/v1/{res}"] = item
        n += 2
        if n < operations:
            one: dict[str, Any] = {"get": _stripe_get_one(g, res, target)}
            n += 1
            if n < operations and k % 2 == 0:
                one["post"] = _stripe_create(g, f"{res}_update", target, False, res[:-1])
                n += 1
            if n < operations and k % 3 == 0:
                one["delete"] = _stripe_delete(g, res)
                n += 1
            paths[f"/v1/{res}/{{{res[:-1]}}}"] = one
        k += 1
    return {
        "openapi": "3.0.0",
        "info": {"title": "Stripe-shaped API", "version": "2023-08-16", "description": g.text()},
        "servers": [{"url": "https://api.example.com/"}],
        "security": [{"basicAuth": []}, {"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": comps,
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _stripe_component(g: _Gen, name: str, i: int, names: list[str]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": {"type": "string", "maxLength": 5000, "description": g.text(3, 10)},
        "object": {"type": "string", "enum": [name], "description": g.text(3, 8)},
        "created": {"type": "integer", "format": "unix-time", "description": g.text(4, 12)},
        "livemode": {"type": "boolean", "description": g.text(4, 12)},
        "metadata": {
            "type": "object",
            "additionalProperties": {"maxLength": 500, "type": "string"},
            "nullable": True,
            "description": g.text(3, 8),
        },
    }
    for _ in range(g.r.randint(3, 12)):
        p = g.name()
        roll = g.r.random()
        if roll < 0.25 and i + 1 < len(names):
            # a $ref chain: each component points to the next ones (deep chains)
            ref = names[min(len(names) - 1, i + g.r.randint(1, 3))]
            props[p] = {
                "anyOf": [{"maxLength": 5000, "type": "string"}, {"$ref": f"#/components/schemas/{ref}"}],
                "description": g.text(3, 8),
                "nullable": g.r.random() < 0.5,
                "x-expansionResources": {"oneOf": [{"$ref": f"#/components/schemas/{ref}"}]},
            }  # fmt: skip
        elif roll < 0.35 and i + 1 < len(names):
            ref = names[min(len(names) - 1, i + 1)]
            props[p] = {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"},
                        "description": g.text(5, 15)}  # fmt: skip
        elif roll < 0.5:
            props[p] = {"type": "string", "enum": g.words(g.r.randint(2, 6)),
                        "nullable": g.r.random() < 0.3, "description": g.text(3, 10)}  # fmt: skip
        elif roll < 0.7:
            props[p] = {"type": "integer", "nullable": g.r.random() < 0.3,
                        "description": g.text(3, 10)}  # fmt: skip
        else:
            props[p] = {"type": "string", "maxLength": 5000, "nullable": g.r.random() < 0.3,
                        "description": g.text(3, 10)}  # fmt: skip
    return {
        "description": g.text(5, 20),
        "properties": props,
        "required": sorted(k for k in props if k in ("id", "object", "created", "livemode")),
        "title": name,
        "type": "object",
        "x-expandableFields": [k for k, v in props.items() if "anyOf" in v],
        "x-resourceId": name,
    }


def _list_response(g: _Gen, target: str) -> dict[str, Any]:
    return {
        "200": {
            "content": {
                "application/json": {
                    "schema": {
                        "description": g.text(3, 10),
                        "properties": {
                            "data": {
                                "items": {"$ref": f"#/components/schemas/{target}"},
                                "type": "array",
                            },
                            "has_more": {"type": "boolean"},
                            "object": {"enum": ["list"], "type": "string"},
                            "url": {"maxLength": 5000, "pattern": "^/v1/", "type": "string"},
                        },
                        "required": ["data", "has_more", "object", "url"],
                        "type": "object",
                        "x-expandableFields": ["data"],
                    }
                }
            },
            "description": "Successful response.",
        },
        "default": _error_response(),
    }


def _error_response() -> dict[str, Any]:
    return {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string", "maxLength": 40000},
                                "type": {"type": "string", "enum": ["api_error", "card_error"]},
                            },
                        }
                    },
                    "required": ["error"],
                }
            }
        },
        "description": "Error response.",
    }


def _empty_form() -> dict[str, Any]:
    return {
        "content": {
            "application/x-www-form-urlencoded": {
                "encoding": {},
                "schema": {"additionalProperties": False, "properties": {}, "type": "object"},
            }
        },
        "required": False,
    }


def _expand_param(g: _Gen) -> dict[str, Any]:
    return {
        "description": "Specifies which fields in the response should be expanded.",
        "explode": True,
        "in": "query",
        "name": "expand",
        "required": False,
        "schema": {"items": {"maxLength": 5000, "type": "string"}, "type": "array"},
        "style": "deepObject",
    }


def _stripe_list(g: _Gen, res: str, target: str, object_param: bool) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "explode": True,
            "in": "query",
            "name": "created",
            "required": False,
            "schema": {
                "anyOf": [
                    {
                        "properties": {k: {"type": "integer"} for k in ("gt", "gte", "lt", "lte")},
                        "title": "range_query_specs",
                        "type": "object",
                    },
                    {"type": "integer"},
                ]
            },
            "style": "deepObject",
        },
        {"description": g.text(5, 20), "in": "query", "name": "customer", "required": False,
         "schema": {"maxLength": 5000, "type": "string"}, "style": "form"},
        {"description": g.text(10, 40), "in": "query", "name": "ending_before", "required": False,
         "schema": {"maxLength": 5000, "type": "string"}, "style": "form"},
        _expand_param(g),
        {"description": g.text(10, 30), "in": "query", "name": "limit", "required": False,
         "schema": {"type": "integer"}, "style": "form"},
        {"description": g.text(10, 40), "in": "query", "name": "starting_after",
         "required": False, "schema": {"maxLength": 5000, "type": "string"}, "style": "form"},
    ]  # fmt: skip
    if object_param:
        params.append(
            {
                "description": g.text(5, 20),
                "explode": True,
                "in": "query",
                "name": "filter",
                "required": False,
                "schema": {
                    "properties": {
                        "status": {"type": "string", "enum": ["open", "closed"]},
                        "owner": {"type": "string", "maxLength": 5000},
                    },
                    "title": "filter_params",
                    "type": "object",
                },
                "style": "deepObject",
            }
        )
    return {
        "description": g.text(10, 40),
        "operationId": f"Get{_camel(res)}",
        "parameters": params,
        "requestBody": _empty_form(),
        "responses": _list_response(g, target),
    }


def _stripe_get_one(g: _Gen, res: str, target: str) -> dict[str, Any]:
    return {
        "description": g.text(10, 30),
        "operationId": f"Get{_camel(res)}Id",
        "parameters": [
            _expand_param(g),
            {
                "in": "path",
                "name": res[:-1],
                "required": True,
                "schema": {"maxLength": 5000, "type": "string"},
                "style": "simple",
            },
        ],
        "requestBody": _empty_form(),
        "responses": {
            "200": {
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{target}"}}
                },
                "description": "Successful response.",
            },
            "default": _error_response(),
        },
    }


def _stripe_delete(g: _Gen, res: str) -> dict[str, Any]:
    return {
        "description": g.text(5, 20),
        "operationId": f"Delete{_camel(res)}Id",
        "parameters": [{"in": "path", "name": res[:-1], "required": True,
                        "schema": {"maxLength": 5000, "type": "string"}, "style": "simple"}],
        "requestBody": _empty_form(),
        "responses": {"200": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"deleted": {"type": "boolean", "enum": [True]},
                                             "id": {"type": "string", "maxLength": 5000}},
            "required": ["deleted", "id"]}}}, "description": "Successful response."},
            "default": _error_response()},
    }  # fmt: skip


def _form_property(g: _Gen, depth: int) -> dict[str, Any]:
    roll = g.r.random()
    if roll < 0.2:
        return {"type": "integer", "description": g.text(6, 30)}
    if roll < 0.3:
        return {"type": "boolean", "description": g.text(5, 20)}
    if roll < 0.45:
        return {"type": "string", "enum": g.words(g.r.randint(2, 5)),
                "description": g.text(5, 20)}  # fmt: skip
    if roll < 0.6 and depth < 3:
        sub = {g.name(): _form_property(g, depth + 1) for _ in range(g.r.randint(2, 7))}
        obj = {"properties": sub, "title": f"{g.name()}_params", "type": "object"}
        if g.r.random() < 0.4:
            obj["required"] = [next(iter(sub))]
        if g.r.random() < 0.5:
            return {"anyOf": [obj, {"enum": [""], "type": "string"}], "description": g.text(5, 30)}
        return {**obj, "description": g.text(5, 30)}
    if roll < 0.7:
        return {"type": "array", "items": {"maxLength": 5000, "type": "string"},
                "description": g.text(5, 20)}  # fmt: skip
    return {"type": "string", "maxLength": 5000, "description": g.text(6, 30)}


def _stripe_create(
    g: _Gen, res: str, target: str, multipart: bool, path_param: str | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "expand": {"description": "Specifies which fields in the response should be expanded.",
                   "items": {"maxLength": 5000, "type": "string"}, "type": "array"},
        "metadata": {
            "anyOf": [{"additionalProperties": {"type": "string"}, "type": "object"},
                      {"enum": [""], "type": "string"}],
            "description": g.text(10, 30),
        },
    }  # fmt: skip
    for _ in range(g.r.randint(2, 16)):
        props[g.name()] = _form_property(g, 0)
    encoding = {
        k: {"explode": True, "style": "deepObject"}
        for k, v in props.items()
        if v.get("type") in ("object", "array") or "anyOf" in v
    }
    media = "application/x-www-form-urlencoded"
    if multipart:
        media = "multipart/form-data"
        props["file"] = {"description": g.text(5, 20), "format": "binary", "type": "string"}
        props["purpose"] = {"enum": ["dispute_evidence", "identity_document"], "type": "string"}
        encoding = {k: {"explode": True, "style": "deepObject"} for k in ("expand", "metadata")}
    op: dict[str, Any] = {
        "description": g.text(10, 50),
        "operationId": f"Post{_camel(res)}",
        "requestBody": {
            "content": {
                media: {
                    "encoding": encoding,
                    "schema": {
                        "additionalProperties": False,
                        "properties": props,
                        "required": [k for k in list(props)[2:4]],
                        "type": "object",
                    },
                }
            },
            "required": True,
        },
        "responses": {
            "200": {
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{target}"}}
                },
                "description": "Successful response.",
            },
            "default": _error_response(),
        },
    }
    if path_param is not None:
        op["parameters"] = [
            {
                "in": "path",
                "name": path_param,
                "required": True,
                "schema": {"maxLength": 5000, "type": "string"},
                "style": "simple",
            }
        ]
    return op


def _camel(text: str) -> str:
    return "".join(p.capitalize() for p in text.split("_"))


# -- GitHub-shaped ------------------------------------------------------------------------------


def github_like(seed: int = 1, *, operations: int = 1000, schemas: int = 900) -> Doc:
    """A GitHub-shaped 3.0.3 description (see the module docstring)."""
    g = _Gen(seed)
    names = [f"{g.name()}-{i}" for i in range(schemas)]
    comps = {name: _github_component(g, i, names) for i, name in enumerate(names)}
    examples = {
        f"{name}-example": {"value": _example(g, 0)} for name in names
    }  # GitHub's examples are a large share of its size
    parameters = {
        "owner": {"name": "owner", "in": "path", "required": True, "description": g.text(3, 8),
                  "schema": {"type": "string"}},
        "repo": {"name": "repo", "in": "path", "required": True, "description": g.text(3, 8),
                 "schema": {"type": "string"}},
        "per-page": {"name": "per_page", "in": "query", "description": g.text(8, 20),
                     "schema": {"type": "integer", "default": 30, "maximum": 100}},
        "page": {"name": "page", "in": "query", "description": g.text(8, 20),
                 "schema": {"type": "integer", "default": 1}},
        "direction": {"name": "direction", "in": "query", "description": g.text(5, 10),
                      "schema": {"type": "string", "enum": ["asc", "desc"]}},
        "since": {"name": "since", "in": "query", "description": g.text(5, 10),
                  "schema": {"type": "string", "format": "date-time"}},
    }  # fmt: skip
    responses = {
        "not_found": {"description": "Resource not found",
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/basic-error"}}}},
        "validation_failed": {"description": "Validation failed",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/basic-error"}}}},
        "not_modified": {"description": "Not modified"},
    }  # fmt: skip
    comps["basic-error"] = {
        "type": "object",
        "properties": {"message": {"type": "string"}, "documentation_url": {"type": "string"}},
    }
    paths: dict[str, Any] = {}
    n = 0
    k = 0
    while n < operations:
        area = g.word()
        base = f"/repos/{{owner}}/{{repo}}/{area}s-{k}"
        target = names[g.r.randrange(len(names))]
        paths[base] = {"get": _github_op(g, f"{area}s-{k}/list", target, body=False, listing=True)}
        n += 1
        if n < operations:
            paths[base]["post"] = _github_op(g, f"{area}s-{k}/create", target, body=True)
            n += 1
        if n < operations:
            item: dict[str, Any] = {"get": _github_op(g, f"{area}s-{k}/get", target, body=False)}
            n += 1
            for method in ("patch", "delete", "put"):
                if n < operations and g.r.random() < 0.5:
                    item[method] = _github_op(g, f"{area}s-{k}/{method}", target,
                                              body=method != "delete")  # fmt: skip
                    n += 1
            paths[f"{base}/{{{area}_id}}"] = item
        k += 1
    return {
        "openapi": "3.0.3",
        "info": {"title": "GitHub-shaped API", "version": "1.1.4", "description": g.text()},
        "servers": [{"url": "https://api.example.com"}],
        "paths": paths,
        "components": {
            "schemas": comps,
            "parameters": parameters,
            "responses": responses,
            "examples": examples,
        },
    }


def _example(g: _Gen, depth: int) -> Any:
    out: dict[str, Any] = {}
    for _ in range(g.r.randint(4, 14)):
        roll = g.r.random()
        key = g.name()
        if roll < 0.15 and depth < 2:
            out[key] = _example(g, depth + 1)
        elif roll < 0.25 and depth < 2:
            out[key] = [_example(g, depth + 1) for _ in range(g.r.randint(1, 2))]
        elif roll < 0.5:
            out[key] = f"https://api.example.com/{g.word()}/{g.r.randint(1, 10**6)}"
        elif roll < 0.7:
            out[key] = g.r.randint(0, 10**9)
        else:
            out[key] = g.text(2, 8)
    return out


def _github_component(g: _Gen, i: int, names: list[str]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": {"type": "integer", "example": g.r.randint(1, 10**6)},
        "node_id": {"type": "string", "example": "MDQ6VXNlcjE="},
        "url": {"type": "string", "format": "uri", "example": "https://api.example.com/x"},
        "created_at": {"type": "string", "format": "date-time", "example": "2011-01-26T19:01:12Z"},
    }
    for _ in range(g.r.randint(4, 16)):
        roll = g.r.random()
        p = g.name()
        if roll < 0.2 and i + 1 < len(names):
            props[p] = {
                "$ref": f"#/components/schemas/{names[min(len(names) - 1, i + g.r.randint(1, 4))]}"
            }
        elif roll < 0.3 and i + 1 < len(names):
            props[p] = {
                "nullable": True,
                "allOf": [{"$ref": f"#/components/schemas/{names[min(len(names) - 1, i + 1)]}"}],
            }
        elif roll < 0.5:
            props[p] = {
                "type": "string",
                "nullable": g.r.random() < 0.3,
                "example": g.word(),
                "description": g.text(3, 12),
            }
        elif roll < 0.7:
            props[p] = {"type": "boolean", "example": True, "description": g.text(3, 12)}
        else:
            props[p] = {
                "type": "string",
                "enum": g.words(3),
                "description": g.text(3, 12),
            }
    return {
        "title": g.name(3),
        "description": g.text(5, 30),
        "type": "object",
        "properties": props,
        "required": ["id", "node_id", "url"],
    }  # fmt: skip


def _github_op(
    g: _Gen, op_id: str, target: str, *, body: bool, listing: bool = False
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"$ref": "#/components/parameters/owner"},
        {"$ref": "#/components/parameters/repo"},
    ]
    if listing:
        params += [{"$ref": "#/components/parameters/per-page"},
                   {"$ref": "#/components/parameters/page"},
                   {"$ref": "#/components/parameters/direction"},
                   {"$ref": "#/components/parameters/since"}]  # fmt: skip
    elif not op_id.endswith(("/create", "/list")):
        params.append({"name": f"{op_id.split('s-')[0]}_id", "in": "path", "required": True,
                       "schema": {"type": "integer"}, "description": g.text(3, 10)})  # fmt: skip
    op: dict[str, Any] = {
        "summary": g.text(3, 8),
        "description": g.text(10, 60),
        "tags": [op_id.split("-")[0]],
        "operationId": op_id,
        "externalDocs": {"description": "API method documentation",
                         "url": f"https://docs.example.com/rest/{op_id}"},
        "parameters": params,
        "responses": {
            "200": {
                "description": "Response",
                "content": {"application/json": {
                    "schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{target}"}}
                    if listing else {"$ref": f"#/components/schemas/{target}"},
                    "examples": {"default": {"$ref": f"#/components/examples/{target}-example"}},
                }},
            },
            "304": {"$ref": "#/components/responses/not_modified"},
            "404": {"$ref": "#/components/responses/not_found"},
        },
        "x-github": {"githubCloudOnly": False, "enabledForGitHubApps": True,
                     "category": op_id.split("-")[0], "subcategory": op_id.split("/")[-1]},
    }  # fmt: skip
    if body:
        props: dict[str, Any] = {}
        for _ in range(g.r.randint(2, 12)):
            roll = g.r.random()
            p = g.name()
            if roll < 0.3:
                props[p] = {"type": "string", "description": g.text(5, 25)}
            elif roll < 0.45:
                props[p] = {"type": "boolean", "default": False, "description": g.text(5, 20)}
            elif roll < 0.6:
                props[p] = {"type": "string", "enum": g.words(3),
                            "description": g.text(5, 20)}  # fmt: skip
            elif roll < 0.75:
                props[p] = {"type": "array", "items": {"type": "string"},
                            "description": g.text(5, 20)}  # fmt: skip
            elif roll < 0.85:
                props[p] = {"type": "integer", "description": g.text(5, 20)}
            else:
                props[p] = {"type": "object", "description": g.text(5, 20), "properties": {
                    g.name(): {"type": "string"} for _ in range(g.r.randint(1, 4))}}  # fmt: skip
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {
                "schema": {"type": "object", "properties": props,
                           "required": [next(iter(props))]},
                "examples": {"default": {"value": {k: "x" for k in list(props)[:2]}}},
            }},
        }  # fmt: skip
        op["responses"]["422"] = {"$ref": "#/components/responses/validation_failed"}
    return op


# -- writing ----------------------------------------------------------------------------------


class _NoAliasDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Never write anchors/aliases (the policy loader refuses them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(doc: Doc, path: Path, *, as_json: bool = False) -> int:
    """Write ``doc`` as YAML (or JSON); return the size in bytes."""
    if as_json:
        text = json.dumps(doc, indent=2)
    else:
        text = yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def operation_count(doc: Doc) -> int:
    return sum(
        1
        for item in doc["paths"].values()
        for method in item
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=("stripe", "github"))
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--operations", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kwargs = {"operations": args.operations} if args.operations else {}
    doc = (
        stripe_like(args.seed, **kwargs)
        if args.shape == "stripe"
        else github_like(args.seed, **kwargs)
    )
    size = dump(doc, args.output, as_json=args.json)
    print(f"{args.output}: {operation_count(doc)} operations, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
