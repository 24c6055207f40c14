"""docs/quickstart.md step 4, as written: its policy block and its app (FastAPI there, the same
Starlette underneath here), and the answers the page shows for each ``curl``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extauthz.cli import main
from extauthz.middleware.asgi import EmbeddedASGIMiddleware

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def quickstart_policy() -> str:
    """The first YAML block of step 4: the page and this test cannot drift apart."""
    text = QUICKSTART.read_text()
    step = text[text.index("## 4. Protect your FastAPI app") :]
    match = re.search(r"```yaml\n(.*?)```", step, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(quickstart_policy())
    return path


def app(policy: Path) -> Starlette:
    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"created": await request.json()})

    async def delete(request: Request) -> JSONResponse:
        return JSONResponse({"deleted": request.path_params["item_id"]})

    routes = [
        Route("/items", create, methods=["POST"]),
        Route("/items/{item_id}", delete, methods=["DELETE"]),
    ]
    application = Starlette(routes=routes)
    application.add_middleware(EmbeddedASGIMiddleware, policy=str(policy), hot_reload=False)
    return application


async def send(policy: Path, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    transport = httpx.ASGITransport(app=app(policy))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        resp = await client.request(method, path, json=body)
    return resp.status_code, resp.json()


def test_the_policy_checks_ok(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(policy)]) == 0
    assert "OK (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "hits"),
    [
        ("POST", "/items", {"name": "pen"}, 200, None),
        ("POST", "/items", {"name": "pen", "callbackUrl": "http://169.254.169.254/latest/meta-data/"},
         403, ["vulnerability.ssrfInternal"]),
        ("POST", "/items", {"name": "pen", "admin": True}, 403, ["contract.unknownField"]),
        ("DELETE", "/items/1", None, 403, ["delete.scope"]),
        ("GET", "/other", None, 403, ["route.unmatched"]),
    ],
)  # fmt: skip
async def test_the_answers_the_page_shows(
    policy: Path, method: str, path: str, body: Any, status: int, hits: list[str] | None
) -> None:
    got_status, got = await send(policy, method, path, body)
    assert got_status == status
    if hits is None:
        assert got == {"created": body}
    else:
        assert got["code"] == "POLICY_VIOLATION" and got["ruleHits"] == hits
