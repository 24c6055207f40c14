"""Fixtures: the REAL server (demo policy) on a Unix socket and TCP, and a policy copy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
