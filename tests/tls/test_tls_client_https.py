"""The client's HTTP transport over ``https://``: a REAL ``extauthz serve`` with TLS (and mTLS)
on its HTTP port, the sync and the async client, what is verified and what is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tls_support import Pki

from extauthz import (
    ContractShieldTimeout,
    ContractShieldUnavailable,
    Decision,
    Identity,
    InvalidConfig,
)
from extauthz.client import (
    FAIL_OPEN_RULE_ID,
    AsyncContractShieldClient,
    AsyncHttpTransport,
    ClientStats,
    ContractShieldClient,
    HttpTransport,
    TlsOptions,
)
from extauthz.devstack import free_port
from extauthz.devstack.certs import KeyPair
from extauthz.devstack.server import ServerProcess

ACTIVATE = "/api/v1/licenses/activate"
T1 = Identity(authenticated=True, subject="alice", tenant="t-1", scopes=("licenses:write",))
T2 = Identity(authenticated=True, subject="bob", tenant="t-2", scopes=("licenses:write",))
JSON = {"content-type": "application/json"}


def activation(tenant: str = "t-1", **extra: Any) -> bytes:
    body = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "dev-1", "tenantId": tenant, **extra}
    return json.dumps(body).encode()


# (method, path, evaluate's keywords): allowed, and blocked for four different reasons
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/healthz", {}),
    ("POST", ACTIVATE, {"headers": JSON, "body": activation(), "identity": T1}),
    (
        "POST",
        ACTIVATE,
        {
            "headers": JSON,
            "body": activation(callbackUrl="http://169.254.169.254/"),
            "identity": T1,
        },
    ),
    ("POST", ACTIVATE, {"headers": JSON, "body": activation("t-1"), "identity": T2}),
    ("GET", "/admin/users", {"identity": T1}),
    ("GET", "/api/v1/licenses/L-1", {}),
]


class TlsPdp:
    """One real server: TLS on HTTP_PORT and GRPC_PORT (mTLS with ``client_ca``), the plain
    HTTP API on a Unix socket beside it; restartable on the same port."""

    def __init__(self, pki: Pki, server: KeyPair, *, client_ca: Path | None = None) -> None:
        self.pki = pki
        self.dir = Path(tempfile.mkdtemp(prefix="cs-https-", dir="/tmp"))
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http_socket = self.dir / "http.sock"
        self.env = {"TLS_CERT_FILE": str(server.cert_file), "TLS_KEY_FILE": str(server.key_file)}
        if client_ca is not None:
            self.env["TLS_CLIENT_CA_FILE"] = str(client_ca)
        self.process: ServerProcess | None = None

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    @property
    def plain(self) -> str:
        return f"http+unix://{self.http_socket}"

    def start(self) -> TlsPdp:
        self.process = ServerProcess(
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            http_unix_socket_path=self.http_socket,
            env={**self.env, "GRPC_HOST": "127.0.0.1"},
            workdir=self.dir,
        )
        self.process.start(wait=False)  # its readiness probe speaks plain HTTP: ours below
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert_file))
        context.load_cert_chain(str(self.pki.client.cert_file), str(self.pki.client.key_file))
        context.check_hostname = False  # readiness only (named_pdp's certificate lacks the IP)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.process is not None
            assert self.process.process.poll() is None, self.process.log_tail()
            try:
                url = f"https://127.0.0.1:{self.http_port}/ready"
                with urllib.request.urlopen(url, context=context, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(self.process.log_tail()) from None
                time.sleep(0.1)

    def sigkill(self) -> None:
        assert self.process is not None and self.process.process is not None
        os.kill(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait(10)

    def close(self) -> None:
        try:
            if self.process is not None:
                self.process.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_pdp(pki: Pki) -> Iterator[TlsPdp]:
    server = TlsPdp(pki, pki.server)
    try:
        yield server.start()  # a start that fails still kills it
    finally:
        server.close()


@pytest.fixture(scope="module")
def mtls_pdp(pki: Pki) -> Iterator[TlsPdp]:
    server = TlsPdp(pki, pki.server, client_ca=pki.ca.cert_file)
    try:
        yield server.start()  # a start that fails still kills it
    finally:
        server.close()


@pytest.fixture(scope="module")
def named_pdp(pki: Pki) -> Iterator[TlsPdp]:
    """Its certificate names pdp.test only: 127.0.0.1 is not in it."""
    server = TlsPdp(pki, pki.ca.issue(pki.dir, "pdp-named-only", dns=("pdp.test",)))
    try:
        yield server.start()  # a start that fails still kills it
    finally:
        server.close()


@pytest.fixture(scope="module")
def plain_pdp() -> Iterator[ServerProcess]:
    with ServerProcess(grpc_port=0, http_port=free_port()) as server:
        yield server


@pytest.fixture
def own_tls_pdp(pki: Pki) -> Iterator[TlsPdp]:
    server = TlsPdp(pki, pki.server)
    try:
        yield server
    finally:
        server.close()


def trusting(pki: Pki, **extra: Any) -> TlsOptions:
    return TlsOptions(ca_file=str(pki.ca.cert_file), **extra)


def with_cert(pki: Pki, pair: KeyPair | None = None, **extra: Any) -> TlsOptions:
    pair = pair or pki.client
    return trusting(pki, cert_file=str(pair.cert_file), key_file=str(pair.key_file), **extra)


OPTIONS: dict[str, Any] = {"timeout_ms": 3000, "retries": 0, "cache_enabled": False}


def decide(
    flavour: str, target: str, tls: TlsOptions | None, requests: list[Any], **options: Any
) -> tuple[list[Decision], ClientStats]:
    """Every request through one client (sync or async): the decisions and the stats."""
    options = {**OPTIONS, **options}
    if flavour == "sync":
        with ContractShieldClient(target, tls=tls, **options) as client:
            return [client.evaluate(m, p, **kw) for m, p, kw in requests], client.stats()

    async def run() -> tuple[list[Decision], ClientStats]:
        async with AsyncContractShieldClient(target, tls=tls, **options) as client:
            return [await client.evaluate(m, p, **kw) for m, p, kw in requests], client.stats()

    return asyncio.run(run())


def refused(flavour: str, target: str, tls: TlsOptions | None, **options: Any) -> str:
    """The message of the ``ContractShieldUnavailable`` one evaluation ends with."""
    return str(failing(flavour, target, tls, **options)[0])


def failing(
    flavour: str, target: str, tls: TlsOptions | None, **options: Any
) -> tuple[ContractShieldUnavailable, ClientStats]:
    """One evaluation that must end in ``ContractShieldUnavailable``, and the stats after it."""
    options = {**OPTIONS, **options}
    client: Any
    if flavour == "sync":
        with ContractShieldClient(target, tls=tls, **options) as client:
            with pytest.raises(ContractShieldUnavailable) as info:
                client.evaluate("GET", "/healthz")
            return info.value, client.stats()

    async def run() -> tuple[ContractShieldUnavailable, ClientStats]:
        async with AsyncContractShieldClient(target, tls=tls, **options) as client:
            with pytest.raises(ContractShieldUnavailable) as info:
                await client.evaluate("GET", "/healthz")
            return info.value, client.stats()

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- settings: the files are read when the client is made ----------------------------------


def _broken(pki: Pki, tmp: Path) -> dict[str, tuple[TlsOptions, str]]:
    garbage = tmp / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp / "missing.pem"
    return {
        "missing ca": (TlsOptions(ca_file=str(missing)), f"tls.ca_file: {missing}: No such file"),
        "garbage ca": (
            TlsOptions(ca_file=str(garbage)),
            f"tls.ca_file: {garbage}: not a PEM CA certificate",
        ),
        "missing key": (
            TlsOptions(cert_file=str(pki.client.cert_file), key_file=str(missing)),
            f"tls.key_file: {missing}: No such file",
        ),
        "mismatched pair": (
            TlsOptions(cert_file=str(pki.client.cert_file), key_file=str(pki.stranger.key_file)),
            f"tls.cert_file: {pki.client.cert_file}: certificate and tls.key_file "
            f"{pki.stranger.key_file} do not load as a pair",
        ),
    }


@pytest.mark.parametrize("case", ["missing ca", "garbage ca", "missing key", "mismatched pair"])
@pytest.mark.parametrize("client", [ContractShieldClient, AsyncContractShieldClient])
def test_unusable_tls_files_are_refused_at_construction(
    pki: Pki, tmp_path: Path, case: str, client: Any
) -> None:
    tls, message = _broken(pki, tmp_path)[case]
    with pytest.raises(InvalidConfig) as info:
        client("https://127.0.0.1:1", tls=tls)  # nothing listens there: no call is made
    assert str(info.value).startswith(message)


def test_a_ca_file_replaces_the_system_roots(pki: Pki) -> None:
    """As gRPC's root_certificates: with ca_file, that CA alone is trusted."""
    context = trusting(pki).ssl_context()
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# --- decisions ---------------------------------------------------------------------------------


def test_a_decision_over_https_is_the_decision_over_http(
    tls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    requests = [
        (m, p, {**kw, "headers": {**kw.get("headers", {}), "x-request-id": f"rq-{i}"}})
        for i, (m, p, kw) in enumerate(REQUESTS)
    ]
    over_https, stats = decide(flavour, tls_pdp.https, trusting(pki), requests)
    over_http, _ = decide(flavour, tls_pdp.plain, None, requests)
    assert over_https == over_http
    assert [d.action for d in over_https] == ["ALLOW", "ALLOW", "BLOCK", "BLOCK", "BLOCK", "BLOCK"]
    assert over_https[0].metadata.policy_version == stats.policy_version is not None
    assert (stats.errors, stats.retries) == (0, 0)


def test_the_server_name_replaces_the_target_host(
    named_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    """127.0.0.1 is not in this server's certificate: only server_name="pdp.test" gets in."""
    message = refused(flavour, named_pdp.https, trusting(pki))
    assert "TLS: " in message and "127.0.0.1" in message
    decisions, _ = decide(flavour, named_pdp.https, trusting(pki, server_name="pdp.test"), REQUESTS)
    assert decisions[0].action == "ALLOW"


@pytest.mark.parametrize("server_name", ["evil.test", "pdp.test.evil"])
def test_a_wrong_server_name_is_refused(
    tls_pdp: TlsPdp, pki: Pki, flavour: str, server_name: str
) -> None:
    message = refused(flavour, tls_pdp.https, trusting(pki, server_name=server_name))
    assert f"Hostname mismatch, certificate is not valid for '{server_name}'" in message


def test_a_wrong_ca_is_refused_and_fail_open_still_applies(
    tls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    wrong = TlsOptions(ca_file=str(pki.other_ca.cert_file))
    assert "TLS: unable to get local issuer certificate" in refused(flavour, tls_pdp.https, wrong)
    [decision], stats = decide(flavour, tls_pdp.https, wrong, REQUESTS[:1], fail_open=True)
    assert decision.rule_ids == (FAIL_OPEN_RULE_ID,)
    assert (stats.failovers, stats.errors) == (1, 1)


def test_without_tls_options_the_system_roots_are_used(tls_pdp: TlsPdp, flavour: str) -> None:
    """An https:// target alone verifies, against the system's CAs (ours is not one of them)."""
    assert "TLS: unable to get local issuer certificate" in refused(flavour, tls_pdp.https, None)


def test_a_refused_handshake_is_retried_as_grpc_retries_unavailable(
    tls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    """Both transports: a failed handshake is UNAVAILABLE, retried ``retries`` times."""
    wrong = TlsOptions(ca_file=str(pki.other_ca.cert_file))
    counts = []
    for target in (tls_pdp.https, f"127.0.0.1:{tls_pdp.grpc_port}"):
        exc, s = failing(flavour, target, wrong, retries=2, retry_delay_ms=1)
        assert not isinstance(exc, ContractShieldTimeout)
        assert "TLS: " in str(exc) or "CERTIFICATE_VERIFY_FAILED" in str(exc)  # https, gRPC
        counts.append((s.errors, s.retries))
    assert counts == [(1, 2), (1, 2)]


# --- mTLS --------------------------------------------------------------------------------------


def test_mtls_with_a_client_certificate_decides(mtls_pdp: TlsPdp, pki: Pki, flavour: str) -> None:
    decisions, stats = decide(flavour, mtls_pdp.https, with_cert(pki), REQUESTS)
    assert decisions[0].action == "ALLOW" and decisions[4].action == "BLOCK"
    assert stats.errors == 0


def test_mtls_without_a_client_certificate_fails_closed_or_open(
    mtls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    message = refused(flavour, mtls_pdp.https, trusting(pki))
    assert "TLS_CLIENT_CA_FILE" in message  # the server closes with no alert: the likely cause
    [decision], stats = decide(flavour, mtls_pdp.https, trusting(pki), REQUESTS[:1], fail_open=True)
    assert decision.rule_ids == (FAIL_OPEN_RULE_ID,) and stats.failovers == 1


def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    assert "TLS" in refused(flavour, mtls_pdp.https, with_cert(pki, pki.stranger))


# --- connections -------------------------------------------------------------------------------


def test_sync_calls_reuse_one_tls_connection(tls_pdp: TlsPdp, pki: Pki) -> None:
    with ContractShieldClient(tls_pdp.https, tls=trusting(pki), **OPTIONS) as client:
        transport = client._transport
        assert isinstance(transport, HttpTransport)
        client.evaluate("GET", "/healthz")
        [sock] = transport._idle
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        local = sock.getsockname()
        for method, path, kw in REQUESTS * 3:
            client.evaluate(method, path, **kw)
        assert transport._idle == [sock] and sock.getsockname() == local
        assert client.stats().errors == 0


async def test_async_calls_reuse_one_tls_connection(tls_pdp: TlsPdp, pki: Pki) -> None:
    async with AsyncContractShieldClient(tls_pdp.https, tls=trusting(pki), **OPTIONS) as client:
        transport = client._transport
        assert isinstance(transport, AsyncHttpTransport)
        await client.evaluate("GET", "/healthz")
        [(_, writer)] = transport._idle
        assert writer.get_extra_info("ssl_object") is not None
        local = writer.get_extra_info("sockname")
        for method, path, kw in REQUESTS * 3:
            await client.evaluate(method, path, **kw)
        [(_, again)] = transport._idle
        assert again is writer and again.get_extra_info("sockname") == local
        assert client.stats().errors == 0


def test_https_to_a_plaintext_listener_is_refused(
    plain_pdp: ServerProcess, pki: Pki, flavour: str
) -> None:
    """The PDP's HTTP port without TLS: the handshake fails, no check is sent in the clear."""
    message = refused(flavour, f"https://127.0.0.1:{plain_pdp.http_port}", trusting(pki))
    assert "is unavailable (TLS: " in message
    decisions, _ = decide(flavour, plain_pdp.http_url, None, REQUESTS[:1])
    assert decisions[0].action == "ALLOW"  # the same port, asked in plain HTTP, answers


def test_a_killed_server_is_unavailable_then_answers_after_a_restart(
    own_tls_pdp: TlsPdp, pki: Pki
) -> None:
    own_tls_pdp.start()
    with ContractShieldClient(own_tls_pdp.https, tls=trusting(pki), **OPTIONS) as client:
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        # killed and back: the pooled TLS connection is dead, replaced at once, no retry
        own_tls_pdp.sigkill()
        own_tls_pdp.start()
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        assert (client.stats().errors, client.stats().retries) == (0, 0)
        own_tls_pdp.sigkill()
        with pytest.raises(ContractShieldUnavailable):
            client.evaluate("GET", "/healthz")
        own_tls_pdp.start()
        assert client.evaluate("GET", "/admin/users", identity=T1).action == "BLOCK"
        assert (client.stats().errors, client.stats().retries) == (1, 0)


async def test_async_a_killed_server_is_unavailable_then_answers_after_a_restart(
    own_tls_pdp: TlsPdp, pki: Pki
) -> None:
    own_tls_pdp.start()
    async with AsyncContractShieldClient(own_tls_pdp.https, tls=trusting(pki), **OPTIONS) as client:
        assert (await client.evaluate("GET", "/healthz")).action == "ALLOW"
        own_tls_pdp.sigkill()
        own_tls_pdp.start()
        assert (await client.evaluate("GET", "/healthz")).action == "ALLOW"
        assert (client.stats().errors, client.stats().retries) == (0, 0)
        own_tls_pdp.sigkill()
        with pytest.raises(ContractShieldUnavailable):
            await client.evaluate("GET", "/healthz")
        own_tls_pdp.start()
        assert (await client.evaluate("GET", "/admin/users", identity=T1)).action == "BLOCK"
        assert (client.stats().errors, client.stats().retries) == (1, 0)


def test_a_frozen_server_times_out_mid_call_and_mid_handshake(
    own_tls_pdp: TlsPdp, pki: Pki, flavour: str
) -> None:
    """SIGSTOP: the kernel still accepts connections, nobody answers. A pooled connection
    times out waiting for the answer, a new one waiting for the handshake."""
    own_tls_pdp.start()
    assert own_tls_pdp.process is not None and own_tls_pdp.process.process is not None
    pid = own_tls_pdp.process.process.pid
    fast = {"timeout_ms": 300}
    if flavour == "sync":
        with ContractShieldClient(own_tls_pdp.https, tls=trusting(pki), **OPTIONS | fast) as c:
            assert c.evaluate("GET", "/healthz").action == "ALLOW"
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(ContractShieldTimeout):
                    c.evaluate("GET", "/healthz")  # the pooled connection
                with pytest.raises(ContractShieldTimeout):
                    c.evaluate("GET", "/healthz")  # that one was dropped: a new handshake
            finally:
                os.kill(pid, signal.SIGCONT)
            assert c.evaluate("GET", "/healthz").action == "ALLOW"
        return

    async def run() -> None:
        async with AsyncContractShieldClient(
            own_tls_pdp.https, tls=trusting(pki), **OPTIONS | fast
        ) as c:
            assert (await c.evaluate("GET", "/healthz")).action == "ALLOW"
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(ContractShieldTimeout):
                    await c.evaluate("GET", "/healthz")
                with pytest.raises(ContractShieldTimeout):
                    await c.evaluate("GET", "/healthz")
            finally:
                os.kill(pid, signal.SIGCONT)
            assert (await c.evaluate("GET", "/healthz")).action == "ALLOW"

    asyncio.run(run())


def test_mtls_over_tls_1_2_refuses_during_the_handshake(mtls_pdp: TlsPdp, pki: Pki) -> None:
    """TLS 1.2 (a PDP behind an older terminator): the same answers, the refusal of a missing
    client certificate comes in the handshake rather than after it."""
    with ContractShieldClient(mtls_pdp.https, tls=with_cert(pki), **OPTIONS) as client:
        client._transport._tls.context.maximum_version = ssl.TLSVersion.TLSv1_2  # type: ignore[attr-defined]
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        [sock] = client._transport._idle  # type: ignore[attr-defined]
        assert sock.version() == "TLSv1.2"
    for flavour in ("sync", "async"):
        client_type = ContractShieldClient if flavour == "sync" else AsyncContractShieldClient
        client = client_type(mtls_pdp.https, tls=trusting(pki), **OPTIONS)
        client._transport._tls.context.maximum_version = ssl.TLSVersion.TLSv1_2  # type: ignore[attr-defined]
        with pytest.raises(ContractShieldUnavailable, match="TLS_CLIENT_CA_FILE"):
            if flavour == "sync":
                client.evaluate("GET", "/healthz")
            else:
                asyncio.run(client.evaluate("GET", "/healthz"))  # type: ignore[arg-type]
