"""TLS and mTLS on the PDP's TCP listeners, with a real ``extauthz serve`` and real clients."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _tls_support import Pki
from cryptography import x509

from extauthz import ContractShieldUnavailable, Identity, InvalidConfig
from extauthz.client import ContractShieldClient, TlsOptions
from extauthz.devstack import free_port
from extauthz.devstack.server import DEMO_POLICY, ServerProcess
from extauthz.server.config import ServerConfig

ALICE = Identity(authenticated=True, subject="alice", tenant="t-1", scopes=("licenses:write",))


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TLS_CERT_FILE": "c.pem"}, "TLS_CERT_FILE is set but TLS_KEY_FILE is not"),
        ({"TLS_KEY_FILE": "k.pem"}, "TLS_KEY_FILE is set but TLS_CERT_FILE is not"),
        ({"TLS_CLIENT_CA_FILE": "ca.pem"}, "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE"),
        (
            {"TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem", "HTTP_PORT": "0"},
            "no TCP listener to secure",
        ),
        (
            {"TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem", "HTTP_TLS": "false"},
            "no TCP listener to secure",
        ),
    ],
)
def test_half_configured_tls_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        ServerConfig.resolve(environ={"UNIX_SOCKET": "/tmp/x.sock", **environ})


def test_a_complete_setting_resolves() -> None:
    config = ServerConfig.resolve(
        environ={
            "GRPC_PORT": "9001",
            "TLS_CERT_FILE": "c.pem",
            "TLS_KEY_FILE": "k.pem",
            "TLS_CLIENT_CA_FILE": "ca.pem",
        }
    )
    assert (config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file) == (
        "c.pem",
        "k.pem",
        "ca.pem",
    )


def _serve_fails(tmp_path: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--policy", str(DEMO_POLICY)],
        env={"PATH": "/usr/bin:/bin", "GRPC_PORT": str(free_port()), "HTTP_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    return proc.stderr


def test_a_key_that_does_not_match_the_certificate_stops_the_server(
    pki: Pki, tmp_path: Path
) -> None:
    err = _serve_fails(
        tmp_path,
        {"TLS_CERT_FILE": str(pki.server.cert_file), "TLS_KEY_FILE": str(pki.client.key_file)},
    )
    assert f"TLS_CERT_FILE: {pki.server.cert_file}: certificate and TLS_KEY_FILE" in err


def test_a_missing_file_stops_the_server_naming_it(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    err = _serve_fails(
        tmp_path,
        {
            "TLS_CERT_FILE": str(pki.server.cert_file),
            "TLS_KEY_FILE": str(pki.server.key_file),
            "TLS_CLIENT_CA_FILE": str(missing),
        },
    )
    assert f"TLS_CLIENT_CA_FILE: {missing}: No such file or directory" in err


# --- a running PDP with mTLS on gRPC and HTTP -----------------------------------------------------


@pytest.fixture(scope="module")
def mtls_pdp(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, dict[str, Path]]]:
    d = tmp_path_factory.mktemp("served")
    files = {
        "cert": d / "server.pem",
        "key": d / "server.key",
        "ca": d / "client-ca.pem",
    }
    shutil.copy2(pki.server.cert_file, files["cert"])
    shutil.copy2(pki.server.key_file, files["key"])
    shutil.copy2(pki.ca.cert_file, files["ca"])
    server = ServerProcess(
        grpc_port=free_port(),
        http_port=free_port(),
        env={
            "TLS_CERT_FILE": str(files["cert"]),
            "TLS_KEY_FILE": str(files["key"]),
            "TLS_CLIENT_CA_FILE": str(files["ca"]),
            "GRPC_HOST": "127.0.0.1",
        },
        workdir=d / "pdp",
    )
    server.start(wait=False)
    _wait_for_port(server)
    try:
        yield server, files
    finally:
        server.kill()


def _wait_for_port(server: ServerProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None and server.process.poll() is None, server.log_tail()
        try:
            with socket.create_connection(("127.0.0.1", server.http_port), timeout=0.5):
                pass
            with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(server.log_tail())


def _client(server: ServerProcess, tls: TlsOptions | None) -> ContractShieldClient:
    return ContractShieldClient(
        f"127.0.0.1:{server.grpc_port}", tls=tls, timeout_ms=3000, retries=0, cache_enabled=False
    )


def _evaluate(client: ContractShieldClient) -> str:
    with client:
        return client.evaluate("GET", "/healthz", identity=ALICE).action


def test_grpc_with_a_client_certificate_decides(mtls_pdp, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server, _ = mtls_pdp
    tls = TlsOptions(
        ca_file=str(pki.ca.cert_file),
        cert_file=str(pki.client.cert_file),
        key_file=str(pki.client.key_file),
        server_name="pdp.test",
    )
    assert _evaluate(_client(server, tls)) == "ALLOW"


@pytest.mark.parametrize("who", ["no certificate", "a certificate from another CA", "plaintext"])
def test_grpc_refuses_a_client_without_a_trusted_certificate(mtls_pdp, pki: Pki, who: str) -> None:  # type: ignore[no-untyped-def]
    server, _ = mtls_pdp
    tls: TlsOptions | None = TlsOptions(ca_file=str(pki.ca.cert_file), server_name="pdp.test")
    if who == "a certificate from another CA":
        tls = TlsOptions(
            ca_file=str(pki.ca.cert_file),
            cert_file=str(pki.stranger.cert_file),
            key_file=str(pki.stranger.key_file),
            server_name="pdp.test",
        )
    elif who == "plaintext":
        tls = None
    with pytest.raises(ContractShieldUnavailable):
        _evaluate(_client(server, tls))


def _https_context(pki: Pki, client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    if client:
        context.load_cert_chain(str(pki.client.cert_file), str(pki.client.key_file))
    return context


def test_http_api_needs_a_client_certificate_too(mtls_pdp, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server, _ = mtls_pdp
    url = f"https://localhost:{server.http_port}/ready"
    with urllib.request.urlopen(url, context=_https_context(pki, client=True), timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(url, context=_https_context(pki, client=False), timeout=5).read()
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
        urllib.request.urlopen(f"http://localhost:{server.http_port}/ready", timeout=5).read()


def _served_serial(port: int, pki: Pki, *, alpn: str | None) -> int:
    context = _https_context(pki, client=True)
    if alpn:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _eventually(check: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_new_certificate_files_are_served_without_a_restart(mtls_pdp, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    server, files = mtls_pdp
    pid = server.process.pid
    assert _served_serial(server.grpc_port, pki, alpn="h2") == pki.server.serial
    renewed = pki.issue_server()
    # the key first, then the certificate: the half-written state in between does not load
    # as a pair and is ignored, the old files keep being served
    shutil.copy2(renewed.key_file, files["key"])
    shutil.copy2(renewed.cert_file, files["cert"])
    for port, alpn in ((server.grpc_port, "h2"), (server.http_port, None)):
        assert _eventually(lambda p=port, a=alpn: _served_serial(p, pki, alpn=a) == renewed.serial)
    assert server.process.pid == pid and server.process.poll() is None
    assert (
        _evaluate(
            _client(
                server,
                TlsOptions(
                    ca_file=str(pki.ca.cert_file),
                    cert_file=str(pki.client.cert_file),
                    key_file=str(pki.client.key_file),
                    server_name="pdp.test",
                ),
            )
        )
        == "ALLOW"
    )


def test_a_new_client_ca_replaces_the_old_one(mtls_pdp, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    """Rotating TLS_CLIENT_CA_FILE to another CA: its clients get in, the old CA's do not."""
    server, files = mtls_pdp
    old = TlsOptions(
        ca_file=str(pki.ca.cert_file),
        cert_file=str(pki.client.cert_file),
        key_file=str(pki.client.key_file),
        server_name="pdp.test",
    )
    new = TlsOptions(
        ca_file=str(pki.ca.cert_file),
        cert_file=str(pki.stranger.cert_file),
        key_file=str(pki.stranger.key_file),
        server_name="pdp.test",
    )
    shutil.copy2(pki.other_ca.cert_file, files["ca"])
    try:

        def rotated() -> bool:
            try:
                return _evaluate(_client(server, new)) == "ALLOW"
            except ContractShieldUnavailable:
                return False

        assert _eventually(rotated)
        with pytest.raises(ContractShieldUnavailable):
            _evaluate(_client(server, old))
        # the HTTP listener follows (it re-opens with a fresh context)
        stranger_ctx = ssl.create_default_context(cafile=str(pki.ca.cert_file))
        stranger_ctx.load_cert_chain(str(pki.stranger.cert_file), str(pki.stranger.key_file))

        def http_rotated() -> bool:
            try:
                urllib.request.urlopen(
                    f"https://localhost:{server.http_port}/ready", context=stranger_ctx, timeout=5
                ).read()
            except OSError:
                return False
            return True

        assert _eventually(http_rotated)
        with pytest.raises(OSError):
            urllib.request.urlopen(
                f"https://localhost:{server.http_port}/ready",
                context=_https_context(pki, client=True),
                timeout=5,
            ).read()
    finally:
        shutil.copy2(pki.ca.cert_file, files["ca"])


def test_client_tls_options_refuse_half_a_setting(pki: Pki) -> None:
    with pytest.raises(InvalidConfig, match="both cert_file and key_file"):
        TlsOptions(cert_file=str(pki.client.cert_file))
    with pytest.raises(InvalidConfig, match="TLS is for a TCP target"):
        ContractShieldClient("unix:///tmp/pdp.sock", tls=TlsOptions())
    with pytest.raises(InvalidConfig, match="tls needs an https:// target"):
        ContractShieldClient("http://127.0.0.1:3100", tls=TlsOptions())
    with pytest.raises(InvalidConfig, match=r"tls\.ca_file: /nonexistent\.pem"):
        ContractShieldClient("127.0.0.1:1", tls=TlsOptions(ca_file="/nonexistent.pem"))
