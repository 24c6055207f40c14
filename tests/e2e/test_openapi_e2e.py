"""Through a real Envoy: routes generated from an OpenAPI document (``openapi: {spec: ...}``)."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _e2e_support import run_stack

DATA = Path(__file__).resolve().parents[1] / "policy" / "data" / "openapi"
POLICY = """\
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes: []
openapi: {spec: ./store31.json}
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    policy_dir = Path(tempfile.mkdtemp(prefix="cs-openapi-", dir="/tmp"))
    for f in DATA.iterdir():
        shutil.copy(f, policy_dir / f.name)
    (policy_dir / "policy.yaml").write_text(POLICY)
    try:
        for stack in run_stack(False, policy=policy_dir / "policy.yaml"):  # one stack
            yield stack.url
    finally:
        shutil.rmtree(policy_dir, ignore_errors=True)


def _post(url: str, path: str, body: object) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get(url: str, path: str) -> int:
    try:
        with urllib.request.urlopen(url + path, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_conforming_request_reaches_the_upstream(url: str) -> None:
    status, _ = _post(url, "/orders?dryRun=true", {"sku": "ABC-1234", "qty": 2})
    assert status == 200
    assert _get(url, "/orders/o-42") == 200


def test_body_breaking_the_spec_is_blocked(url: str) -> None:
    status, body = _post(url, "/orders", {"sku": "abc", "qty": 2})
    assert status == 403
    assert json.loads(body)["ruleHits"] == ["contract.schema.invalid"]


def test_query_parameter_breaking_the_spec_is_blocked(url: str) -> None:
    status, body = _post(url, "/orders?dryRun=maybe", {"sku": "ABC-1234", "qty": 2})
    assert (status, json.loads(body)["ruleHits"]) == (403, ["contract.parameter.invalid"])
    # createOrder's x-contractshield asks for rejectUnknownParameters
    status, _ = _post(url, "/orders?debug=1", {"sku": "ABC-1234", "qty": 2})
    assert status == 403
    assert _get(url, "/orders/not-an-id") == 403  # the path parameter's pattern
