"""One real stack per module and authz mode (``_e2e_support.run_stack``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _e2e_support import Stack, run_stack


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The sidecar stack in each ext_authz mode: every test using it runs in both."""
    yield from run_stack(tcp=False, mode=request.param)


@pytest.fixture(scope="module")
def tcp_stack() -> Iterator[Stack]:
    yield from run_stack(tcp=True)
