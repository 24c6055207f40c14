"""Shared fixtures: free ports, short temp dirs for Unix sockets, real processes (devstack)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from extauthz.devstack import free_port as _free_port
from extauthz.devstack.envoy import EnvoyProcess, render_config
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO_ROOT / "policies" / "demo.yaml"


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for each port you need; the OS picks ports that are free right now."""
    return _free_port


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def socket_path(short_tmp: Path) -> str:
    return str(short_tmp / "pdp.sock")


@pytest.fixture
def upstream() -> Iterator[UpstreamThread]:
    with UpstreamThread() as app:
        yield app


@pytest.fixture
def start_server(short_tmp: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``extauthz serve`` subprocesses; all are killed at teardown."""
    started: list[ServerProcess] = []

    def start(*, wait: bool = True, **kwargs: Any) -> ServerProcess:
        kwargs.setdefault("policy", DEMO_POLICY)
        kwargs.setdefault("workdir", short_tmp / f"server{len(started)}")
        server = ServerProcess(**kwargs)
        started.append(server)
        return server.start(wait=wait)

    try:
        yield start
    finally:
        for server in started:
            server.kill()


@pytest.fixture
def start_envoy(short_tmp: Path) -> Iterator[Callable[..., EnvoyProcess]]:
    """Render a config from ``envoy/*.yaml`` with free ports and start a real Envoy."""
    started: list[EnvoyProcess] = []

    def start(config: dict[str, Any] | None = None, **overrides: Any) -> EnvoyProcess:
        if config is None:
            overrides.setdefault("listen_port", _free_port())
            overrides.setdefault("admin_port", _free_port())
            config = render_config(**overrides)
        envoy = EnvoyProcess(config, workdir=short_tmp / f"envoy{len(started)}")
        started.append(envoy)
        return envoy.start()

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()


@dataclass(frozen=True)
class ShopProtos:
    """``tests/data/grpc/shop.proto`` compiled at test time (grpcio-tools): its descriptor
    set (``--include_imports``) and a folder with its Python and gRPC stubs."""

    descriptor_set: Path
    stubs: Path


@pytest.fixture(scope="session")
def shop_protos(tmp_path_factory: pytest.TempPathFactory) -> ShopProtos:
    import importlib.resources

    from grpc_tools import protoc

    src = Path(__file__).parent / "data" / "grpc"
    out = tmp_path_factory.mktemp("shop_protos")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{src}",
        f"-I{well_known}",
        "--include_imports",
        f"--descriptor_set_out={out / 'shop.binpb'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(src / "shop.proto"),
        str(src / "buf" / "validate" / "validate.proto"),
    ]
    assert protoc.main(args) == 0, "protoc failed on tests/data/grpc/shop.proto"
    return ShopProtos(out / "shop.binpb", out)
