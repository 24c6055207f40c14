"""Through a real Envoy, both authz modes: routes from a description with form, bracketed-key
and multipart bodies (tests/policy/data/openapi/forms30.yaml). A request the description
allows reaches the upstream with the very bytes sent; one it does not is stopped before."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _e2e_support import Stack, run_stack

from tests import _multipart

DATA = Path(__file__).resolve().parents[1] / "policy" / "data" / "openapi"
POLICY = """\
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes: []
openapi: {spec: ./forms30.yaml, rejectUnknownParameters: true}
"""
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "e2e-b0undary"


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    policy_dir = tmp_path_factory.mktemp("forms-e2e")
    shutil.copy(DATA / "forms30.yaml", policy_dir / "forms30.yaml")
    (policy_dir / "policy.yaml").write_text(POLICY)
    yield from run_stack(False, request.param, policy=policy_dir / "policy.yaml")


def send(
    stack: Stack, method: str, path: str, body: bytes | None = None, ctype: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {"content-type": ctype} if ctype else {}
    req = urllib.request.Request(stack.url + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"raw": raw.decode("utf-8", "replace")}


part = functools.partial(_multipart.part, BOUNDARY)
multipart = functools.partial(_multipart.multipart, BOUNDARY)


def assert_reached(stack: Stack, status: int, echo: dict[str, object], sent: bytes) -> None:
    assert status == 200, echo
    assert echo["bodyBytes"] == len(sent)
    assert echo["bodySha256"] == hashlib.sha256(sent).hexdigest()  # the bytes, unchanged


def test_a_form_with_bracketed_keys_reaches_the_upstream(stack: Stack) -> None:
    sent = urllib.parse.urlencode(
        [("amount", "2000"), ("currency", "usd"), ("metadata[order_id]", "6735"),
         ("shipping[name]", "Jo"), ("shipping[address][line1]", "1 Main St"),
         ("expand[]", "customer"), ("expand[]", "invoice"),
         ("items[0][price]", "p_1"), ("items[0][quantity]", "2")]
    ).encode()  # fmt: skip
    status, echo = send(stack, "POST", "/v1/charges", sent, FORM)
    assert_reached(stack, status, echo, sent)
    assert echo["headers"]["content-type"] == FORM  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "hit"),
    [
        (b"amount=abc&currency=usd", "contract.schema.invalid"),  # amount is an integer
        (b"amount=1&amount=2&currency=usd", "contract.schema.invalid"),  # which one wins?
        (b"amount=1&currency=usd&items[0][quantity]=two", "contract.schema.invalid"),
        (b"amount=1&currency=usd&metadata[a]=1&metadata[a]=2", "contract.schema.invalid"),
    ],
)
def test_a_form_breaking_the_description_is_stopped(stack: Stack, raw: bytes, hit: str) -> None:
    before = stack.upstream.count
    status, body = send(stack, "POST", "/v1/charges", raw, FORM)
    assert (status, body.get("ruleHits")) == (403, [hit])
    assert stack.upstream.count == before


def test_a_json_body_to_a_form_only_operation_is_415(stack: Stack) -> None:
    before = stack.upstream.count
    status, body = send(
        stack, "POST", "/v1/charges", b'{"amount": 1, "currency": "usd"}', "application/json"
    )
    assert (status, body.get("ruleHits")) == (415, ["contract.mediaType"])
    assert stack.upstream.count == before


def test_a_multipart_upload_reaches_the_upstream(stack: Stack) -> None:
    sent = multipart(
        part("purpose", b"dispute_evidence"),
        part("file", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "scan.png", "image/png"),
        part("file_link_data[create]", b"true"),
        part("expand[]", b"file_link"),
    )
    status, echo = send(
        stack, "POST", "/v1/files", sent, f"multipart/form-data; boundary={BOUNDARY}"
    )
    assert_reached(stack, status, echo, sent)


@pytest.mark.parametrize(
    "sent",
    [
        multipart(part("purpose", b"nope"), part("file", b"x", "a.png", "image/png")),
        multipart(
            part("purpose", b"dispute_evidence"), part("file", b"<p>", "a.html", "text/html")
        ),
        multipart(part("purpose", b"dispute_evidence")),  # no file
    ],
    ids=["enum", "part-type", "required"],
)
def test_a_multipart_upload_breaking_the_description_is_stopped(stack: Stack, sent: bytes) -> None:
    before = stack.upstream.count
    status, body = send(
        stack, "POST", "/v1/files", sent, f"multipart/form-data; boundary={BOUNDARY}"
    )
    assert (status, body.get("ruleHits")) == (403, ["contract.schema.invalid"])
    assert stack.upstream.count == before


def test_bracketed_query_keys_are_checked(stack: Stack) -> None:
    status, echo = send(stack, "GET", "/v1/charges?created[gte]=1690000000&expand[]=customer")
    assert status == 200 and "created[gte]=1690000000" in urllib.parse.unquote(str(echo["query"]))
    assert send(stack, "GET", "/v1/charges?created=1690000000")[0] == 200
    status, body = send(stack, "GET", "/v1/charges?created[gte]=notanumber")
    assert (status, body.get("ruleHits")) == (403, ["contract.parameter.invalid"])
    status, body = send(stack, "GET", "/v1/charges?created[foo]=1")
    assert (status, body.get("ruleHits")) == (403, ["contract.parameter.unknown"])
