"""The SSRF rows of the bypass catalogue through a real Envoy, in both ext_authz modes.

Every ``ssrf-*`` row (demo and catalogue policies: URLs in JSON fields, form fields, query
values and named host fields) goes as raw bytes through Envoy in gRPC mode and in HTTP mode.
A BLOCK row never reaches the upstream and names ``vulnerability.ssrfInternal``; an ALLOW row
reaches it; and the two modes give each row the same status and the same rule hits.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from _reliability_support import CATALOGUE, CATALOGUE_POLICY, DEMO_POLICY, Stack, running_stack
from test_bypass_through_envoy import _raw_request, _send

pytestmark = pytest.mark.timeout(180)

ROWS = [
    row
    for row in yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    if row["name"].startswith("ssrf-")
]
POLICIES = {"demo": DEMO_POLICY, "catalogue": CATALOGUE_POLICY}
MODES = ("grpc", "http")


@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[tuple[str, str], Stack]]:
    """One stack per policy and authz mode, for the whole module."""
    with contextlib.ExitStack() as stack:
        yield {
            (policy, mode): stack.enter_context(running_stack(policy=path, authz_mode=mode))
            for policy, path in POLICIES.items()
            for mode in MODES
        }


def _answer(stack: Stack, row: dict[str, Any]) -> tuple[int, list[str], int]:
    """Status, rule hits (empty unless the PDP answered) and requests that reached upstream."""
    before = stack.upstream.count
    status, body = _send(stack.port, _raw_request(row, f"{time.monotonic_ns()}"))
    hits: list[str] = []
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        if isinstance(answer, dict):
            hits = sorted(answer.get("ruleHits") or [])
    return status, hits, stack.upstream.count - before


def test_the_catalogue_has_ssrf_rows_of_every_shape() -> None:
    """JSON, form, query and named-field rows, in both policies, blocking and passing."""
    shapes = {
        (
            row.get("policy", "demo"),
            "query" if "?" in row["request"]["path"] else
            "form" if "form" in str(row["request"].get("headers")) else "json",
            row["expect"]["action"],
        )
        for row in ROWS
    }  # fmt: skip
    for shape in [
        ("demo", "json", "BLOCK"), ("demo", "query", "BLOCK"), ("demo", "json", "ALLOW"),
        ("catalogue", "json", "BLOCK"), ("catalogue", "form", "BLOCK"),
        ("catalogue", "query", "BLOCK"), ("catalogue", "json", "ALLOW"),
    ]:  # fmt: skip
        assert shape in shapes, shape
    assert len(ROWS) >= 90


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_ssrf_row_through_envoy_in_both_modes(
    stacks: dict[tuple[str, str], Stack], row: dict[str, Any]
) -> None:
    policy = row.get("policy", "demo")
    expect = row["expect"]
    answers = {mode: _answer(stacks[(policy, mode)], row) for mode in MODES}
    where = f"{row['name']}: expected {expect}, got {answers}"
    for status, hits, forwarded in answers.values():
        if expect["action"] == "ALLOW":
            assert (status, forwarded) == (expect.get("status", 200), 1), where
            assert "vulnerability.ssrfInternal" not in hits, where
        else:
            assert forwarded == 0, where
            assert status == expect["status"], where
            for hit in expect.get("hits", ()):
                assert hit in hits, where
    (g_status, g_hits, _), (h_status, h_hits, _) = answers["grpc"], answers["http"]
    assert (g_status, g_hits) == (h_status, h_hits), where
