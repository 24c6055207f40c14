"""OpenAPI documents shaped like the OAI's example documents (``examples/v3.0`` of
OAI/OpenAPI-Specification), written here for the differential test: the same operations,
parameters, bodies and servers, in our own words. Each is a plain dict (the test writes it
to a file for the policy)."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]

_OK = {"200": {"description": "ok"}}


def _info(title: str) -> dict[str, str]:
    return {"title": title, "version": "1.0.0"}


def petstore() -> Doc:
    """A pet list with an int32 ``limit`` and a JSON ``Pet`` body behind ``/v1``."""
    pet = {
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "integer", "format": "int64"},
            "name": {"type": "string"},
            "tag": {"type": "string"},
        },
    }
    return {
        "openapi": "3.0.0",
        "info": _info("Petstore"),
        "servers": [{"url": "http://petstore.example.com/v1"}],
        "paths": {
            "/pets": {
                "get": {
                    "operationId": "listPets",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "maximum": 100, "format": "int32"},
                        }
                    ],
                    "responses": _OK,
                },
                "post": {
                    "operationId": "createPets",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                        "required": True,
                    },
                    "responses": {"201": {"description": "created"}},
                },
            },
            "/pets/{petId}": {
                "get": {
                    "operationId": "showPetById",
                    "parameters": [
                        {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": _OK,
                }
            },
        },
        "components": {"schemas": {"Pet": pet}},
    }  # fmt: skip


def petstore_expanded() -> Doc:
    """Array ``tags`` query parameter, ``allOf`` bodies, an int64 path id, behind ``/api``."""
    return {
        "openapi": "3.0.0",
        "info": _info("Swagger-Petstore-shaped"),
        "servers": [{"url": "https://petstore.example.io/api"}],
        "paths": {
            "/pets": {
                "get": {
                    "operationId": "findPets",
                    "parameters": [
                        {"name": "tags", "in": "query", "required": False, "style": "form",
                         "schema": {"type": "array", "items": {"type": "string"}}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "format": "int32"}},
                    ],
                    "responses": _OK,
                },
                "post": {
                    "operationId": "addPet",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                    },
                    "responses": _OK,
                },
            },
            "/pets/{id}": {
                "get": {
                    "operationId": "find pet by id",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer", "format": "int64"}}],
                    "responses": _OK,
                },
                "delete": {
                    "operationId": "deletePet",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer", "format": "int64"}}],
                    "responses": {"204": {"description": "deleted"}},
                },
            },
        },
        "components": {
            "schemas": {
                "Pet": {"allOf": [{"$ref": "#/components/schemas/NewPet"},
                                  {"type": "object", "required": ["id"],
                                   "properties": {"id": {"type": "integer", "format": "int64"}}}]},
                "NewPet": {"type": "object", "required": ["name"],
                           "properties": {"name": {"type": "string"}, "tag": {"type": "string"}}},
            }
        },
    }  # fmt: skip


def uspto() -> Doc:
    """Server variables, two path parameters, a form body with integers."""
    return {
        "openapi": "3.0.1",
        "info": _info("Data Set API-shaped"),
        "servers": [{"url": "{scheme}://data.example.gov/ds-api",
                     "variables": {"scheme": {"enum": ["https", "http"], "default": "https"}}}],
        "paths": {
            "/": {"get": {"operationId": "list-data-sets", "responses": _OK}},
            "/{dataset}/{version}/fields": {
                "get": {
                    "operationId": "list-searchable-fields",
                    "parameters": [
                        {"name": "dataset", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": _OK,
                }
            },
            "/{dataset}/{version}/records": {
                "post": {
                    "operationId": "perform-search",
                    "parameters": [
                        {"name": "version", "in": "path", "required": True,
                         "schema": {"type": "string", "default": "v1"}},
                        {"name": "dataset", "in": "path", "required": True,
                         "schema": {"type": "string", "default": "oa_citations"}},
                    ],
                    "requestBody": {
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "criteria": {"type": "string", "default": "*:*"},
                                        "start": {"type": "integer", "default": 0},
                                        "rows": {"type": "integer", "default": 100},
                                    },
                                    "required": ["criteria"],
                                }
                            }
                        }
                    },
                    "responses": _OK,
                }
            },
        },
    }  # fmt: skip


def api_with_examples() -> Doc:
    """Two operations without parameters (the version list)."""
    return {
        "openapi": "3.0.0",
        "info": _info("Simple API overview"),
        "paths": {
            "/": {"get": {"operationId": "listVersionsv2", "responses": _OK}},
            "/v2": {"get": {"operationId": "getVersionDetailsv2", "responses": _OK}},
        },
    }


def link_example() -> Doc:
    """Path templates several parameters deep, an enum query parameter, links."""
    user = {"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}
    slug = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
    pid = {"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}}
    state = {"name": "state", "in": "query",
             "schema": {"type": "string", "enum": ["open", "merged", "declined"]}}  # fmt: skip
    link = {"operationId": "getRepository", "parameters": {"username": "$response.body#/owner"}}
    return {
        "openapi": "3.0.0",
        "info": _info("Link Example"),
        "paths": {
            "/2.0/users/{username}": {"get": {"operationId": "getUserByName", "parameters": [user],
                                              "responses": {"200": {"description": "u",
                                                                    "links": {"l": link}}}}},
            "/2.0/repositories/{username}": {"get": {"operationId": "getRepositoriesByOwner",
                                                     "parameters": [user], "responses": _OK}},
            "/2.0/repositories/{username}/{slug}": {
                "get": {"operationId": "getRepository", "parameters": [user, slug], "responses": _OK}},
            "/2.0/repositories/{username}/{slug}/pullrequests": {
                "get": {"operationId": "getPullRequestsByRepository",
                        "parameters": [user, slug, state], "responses": _OK}},
            "/2.0/repositories/{username}/{slug}/pullrequests/{pid}": {
                "get": {"operationId": "getPullRequestsById", "parameters": [user, slug, pid],
                        "responses": _OK}},
            "/2.0/repositories/{username}/{slug}/pullrequests/{pid}/merge": {
                "post": {"operationId": "mergePullRequest", "parameters": [user, slug, pid],
                         "responses": {"204": {"description": "merged"}}}},
        },
    }  # fmt: skip


def callback_example() -> Doc:
    """A required ``format: uri`` query parameter and a callback (not a route)."""
    return {
        "openapi": "3.0.0",
        "info": _info("Callback Example"),
        "paths": {
            "/streams": {
                "post": {
                    "description": "subscribes a client to receive out-of-band data",
                    "parameters": [{"name": "callbackUrl", "in": "query", "required": True,
                                    "schema": {"type": "string", "format": "uri"}}],
                    "responses": {"201": {"description": "subscribed", "content": {
                        "application/json": {"schema": {"type": "object", "required": ["subscriptionId"],
                                                        "properties": {"subscriptionId": {"type": "string"}}}}}}},
                    "callbacks": {"onData": {"{$request.query.callbackUrl}/data": {"post": {
                        "requestBody": {"content": {"application/json": {"schema": {
                            "type": "object", "properties": {"timestamp": {"type": "string", "format": "date-time"},
                                                             "userData": {"type": "string"}}}}}},
                        "responses": {"202": {"description": "ok"}}}}}},
                }
            }
        },
    }  # fmt: skip


OAI_EXAMPLES = {
    "petstore": petstore,
    "petstore-expanded": petstore_expanded,
    "uspto": uspto,
    "api-with-examples": api_with_examples,
    "link-example": link_example,
    "callback-example": callback_example,
}


def styles() -> Doc:
    """Every parameter location and style OpenAPI 3.0 lists, and a multipart upload: the
    shapes the OAI examples do not have."""
    ints = {"type": "array", "items": {"type": "integer", "maximum": 1000}, "maxItems": 5}
    words = {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}}
    point = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
             "required": ["x"]}  # fmt: skip

    def q(name: str, schema: Any, **kw: Any) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, **kw}

    return {
        "openapi": "3.0.3",
        "info": _info("Styles"),
        "servers": [{"url": "/styles"}],
        "paths": {
            "/query": {
                "get": {
                    "operationId": "queryStyles",
                    "parameters": [
                        q("ids", ints),  # form, exploded: ids=1&ids=2
                        q("csv", ints, style="form", explode=False),
                        q("spaced", words, style="spaceDelimited", explode=False),
                        q("piped", words, style="pipeDelimited", explode=False),
                        q("filter", point, style="deepObject", explode=True),
                        q("flag", {"type": "boolean"}),
                        q("ratio", {"type": "number", "minimum": 0, "maximum": 1}),
                        q("count", {"type": "integer", "format": "int32"}, required=True),
                        q("name", {"type": "string", "maxLength": 12, "pattern": "^[a-z]+$"}),
                    ],
                    "responses": _OK,
                }
            },
            "/points/{label}/{matrix}/{simple}": {
                "get": {
                    "operationId": "pathStyles",
                    "parameters": [
                        {"name": "label", "in": "path", "required": True, "style": "label",
                         "schema": ints},
                        {"name": "matrix", "in": "path", "required": True, "style": "matrix",
                         "explode": True, "schema": ints},
                        {"name": "simple", "in": "path", "required": True,
                         "schema": {"type": "integer", "minimum": 1}},
                    ],
                    "responses": _OK,
                }
            },
            "/headers": {
                "get": {
                    "operationId": "headerStyles",
                    "parameters": [
                        {"name": "X-Rate", "in": "header", "required": True,
                         "schema": {"type": "integer", "minimum": 0, "maximum": 100}},
                        {"name": "X-Tags", "in": "header", "schema": words},
                        {"name": "X-Trace", "in": "header",
                         "schema": {"type": "string", "pattern": "^[a-f0-9]{8}$"}},
                        {"name": "session", "in": "cookie",
                         "schema": {"type": "string", "minLength": 4, "maxLength": 16}},
                    ],
                    "responses": _OK,
                }
            },
            "/uploads": {
                "post": {
                    "operationId": "upload",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["file", "purpose"],
                                    "properties": {
                                        "file": {"type": "string", "format": "binary", "maxLength": 64},
                                        "purpose": {"type": "string", "enum": ["avatar", "evidence"]},
                                        "pages": {"type": "integer", "minimum": 1},
                                        "labels": words,
                                        "meta": point,
                                    },
                                },
                            },
                            "application/json": {
                                "schema": {"type": "object", "required": ["purpose"],
                                           "properties": {"purpose": {"type": "string",
                                                                      "enum": ["avatar", "evidence"]},
                                                          "pages": {"type": "integer", "minimum": 1},
                                                          "meta": point}},
                            },
                        },
                    },
                    "responses": _OK,
                }
            },
            "/orders": {
                "post": {
                    "operationId": "order",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["sku"],
                                    "properties": {
                                        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                                        "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                                        "gift": {"type": "boolean"},
                                        "notes": {"type": "array", "items": {"type": "string", "maxLength": 20}},
                                        "codes": ints,
                                        "shipping": point,
                                    },
                                },
                                "encoding": {
                                    "codes": {"style": "form", "explode": False},
                                    "shipping": {"style": "deepObject", "explode": True},
                                },
                            }
                        },
                    },
                    "responses": _OK,
                }
            },
        },
    }  # fmt: skip


OAI_EXAMPLES_AND_STYLES = {**OAI_EXAMPLES, "styles": styles}
