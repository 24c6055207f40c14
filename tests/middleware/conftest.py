"""Fixtures: the REAL server (demo policy) on a Unix socket and TCP, and a policy copy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extauthz import Identity
from extauthz.devstack import free_port
from extauthz.devstack.server import DEMO_POLICY, ServerProcess


@pytest.fixture(scope="module")
def pdp_targets() -> Iterator[dict[str, str]]:
    d = Path(tempfile.mkdtemp(prefix="cs-mw-", dir="/tmp"))
    port = free_port()
    server = ServerProcess(
        unix_socket_path=d / "pdp.sock", grpc_port=port, http_port=0, workdir=d
    ).start()
    try:
        yield {"unix": f"unix://{d}/pdp.sock", "tcp": f"127.0.0.1:{port}"}
    finally:
        server.kill()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def policy_copy() -> Iterator[Path]:
    """A private, editable copy of the demo policy (and its schemas) for hot-reload tests."""
    d = Path(tempfile.mkdtemp(prefix="cs-mw-policy-", dir="/tmp"))
    shutil.copytree(DEMO_POLICY.parent / "schemas", d / "schemas")
    (d / "demo.yaml").write_text(DEMO_POLICY.read_text())
    try:
        yield d / "demo.yaml"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def identity_from_header(value: str | None) -> Identity | None:
    """Test stand-in for the app's own token verification: ``x-test-user: alice@t-1``."""
    if not value:
        return None
    subject, _, tenant = value.partition("@")
    return Identity(authenticated=True, subject=subject, tenant=tenant or None)


def asgi_identity(scope: Any) -> Identity | None:
    for key, value in scope["headers"]:
        if key == b"x-test-user":
            return identity_from_header(value.decode())
    return None


def wsgi_identity(environ: Any) -> Identity | None:
    return identity_from_header(environ.get("HTTP_X_TEST_USER"))
