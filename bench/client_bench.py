"""Client SDK latency against the REAL server: cache hit, remote Check over gRPC and over HTTP
(``POST /v1/check``), each on a Unix socket and TCP, and HTTP over TLS (``https-tcp``: a second
server with ``TLS_CERT_FILE``, throw-away certificates), in interleaved rounds; the HTTP client
libraries side by side on the same request bytes (why the transport uses ``http.client``); and
(for the deployment-patterns table) the embedded middleware's in-process path.

Prints figures only (never a pass/fail). Targets: cache hit <= 10 us per ``evaluate``; remote
evaluate over the HTTP Unix socket p50 <= 0.35x the gRPC client's (Unix socket) p50 in the same
run, and below 250 us on a quiet machine (issue 14).
The request is a clean license activation with a JSON body and an identity (demo policy).
Run: ``.venv/bin/python bench/client_bench.py [--remote N] [--hits N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz import Identity  # noqa: E402
from extauthz.client import ContractShieldClient, TlsOptions, describe  # noqa: E402
from extauthz.devstack import free_port  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY, ServerProcess  # noqa: E402

PATH = "/api/v1/licenses/activate"
HEADERS = {
    "content-type": "application/json",
    "user-agent": "bench/1.0",
    "accept": "application/json",
    "x-request-id": "bench-1",
}
BODY = json.dumps(
    {
        "licenseKey": "ABCD-1234-EFGH-5678",
        "deviceId": "device-42",
        "tenantId": "tenant-a",
        "callbackUrl": "https://app.example.com/hooks/license",
    }
).encode()
IDENTITY = Identity(
    authenticated=True, subject="alice", tenant="tenant-a", scopes=("licenses:write",)
)


def call(client: ContractShieldClient) -> Callable[[], object]:
    def once() -> object:
        return client.evaluate("POST", PATH, headers=HEADERS, body=BODY, identity=IDENTITY)

    return once


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call latencies in microseconds (GC off while measuring)."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            start = clock()
            fn()
            samples.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, samples: list[float]) -> str:
    return (
        f"{label:<40} n={len(samples):>7}  mean={statistics.fmean(samples):9.1f} us"
        f"  p50={pct(samples, 0.50):9.1f} us  p99={pct(samples, 0.99):9.1f} us"
    )


def tls_server(workdir: Path) -> tuple[ServerProcess, str, TlsOptions] | None:
    """A second server, TLS on its HTTP port (certificates made now; None without the
    ``cryptography`` dev dependency). Started, not yet waited for."""
    try:
        from extauthz.devstack.certs import make_ca
    except ImportError:
        return None
    ca = make_ca(workdir / "ca")
    cert = ca.issue(workdir, "pdp", ips=("127.0.0.1",))
    server = ServerProcess(
        policy=DEMO_POLICY,
        http_port=free_port(),
        env={"TLS_CERT_FILE": str(cert.cert_file), "TLS_KEY_FILE": str(cert.key_file)},
        workdir=workdir / "tls-pdp",
    )
    server.env["LOG_LEVEL"] = "warning"
    return server, f"https://127.0.0.1:{server.http_port}", TlsOptions(ca_file=str(ca.cert_file))


def wait_https(target: str, tls: TlsOptions, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ContractShieldClient(target, tls=tls, timeout_ms=1000, retries=0) as client:
                client.evaluate("GET", "/healthz")
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def library_round_trips(sock: Path, port: int, n: int) -> dict[str, list[float]]:
    """The same ``POST /v1/check`` (one CheckRequest's bytes) with each HTTP client library."""
    import http.client
    import socket

    from extauthz.client._request import build_check_request

    body = build_check_request(
        describe("POST", PATH, headers=HEADERS, body=BODY, identity=IDENTITY)
    ).SerializeToString()
    headers = {"content-type": "application/x-protobuf"}
    out: dict[str, list[float]] = {}

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(sock))

    def via_http_client(conn: http.client.HTTPConnection) -> Callable[[], object]:
        def once() -> object:
            conn.request("POST", "/v1/check", body, headers)
            return conn.getresponse().read()

        return once

    from extauthz.client._http_transport import HttpTransport, _exchange

    raw = HttpTransport(f"http+unix://{sock}")
    raw_sock = raw._connect(1.0)
    message = b"%s%d\r\n\r\n%s" % (raw._head, len(body), body)
    fns: dict[str, Callable[[], object]] = {
        "socket + hand-split head (ours), unix": lambda: _exchange(raw_sock, message, 1.0),
        "http.client, unix": via_http_client(UnixHTTPConnection("localhost")),
        "http.client, tcp": via_http_client(http.client.HTTPConnection("127.0.0.1", port)),
    }
    try:
        import urllib3

        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
        fns["urllib3, tcp"] = lambda: (
            pool.request("POST", "/v1/check", body=body, headers=headers).data
        )
    except ImportError:
        pass
    try:
        import httpx

        tcp_client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        uds_client = httpx.Client(
            base_url="http://pdp", transport=httpx.HTTPTransport(uds=str(sock))
        )
        fns["httpx, tcp"] = lambda: (
            tcp_client.post("/v1/check", content=body, headers=headers).content
        )
        fns["httpx, unix"] = lambda: (
            uds_client.post("/v1/check", content=body, headers=headers).content
        )
    except ImportError:
        pass
    for fn in fns.values():
        timed(fn, 200)
    for _ in range(3):  # interleaved rounds
        for name, fn in fns.items():
            out.setdefault(name, []).extend(timed(fn, n // 3))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=200_000, help="cache-hit calls")
    parser.add_argument("--remote", type=int, default=3_000, help="remote calls per transport")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cs-bench-", dir="/tmp"))
    sock = workdir / "pdp.sock"
    http_sock = workdir / "http.sock"
    port, http_port = free_port(), free_port()
    server = ServerProcess(
        policy=DEMO_POLICY,
        unix_socket_path=sock,
        grpc_port=port,
        http_port=http_port,
        http_unix_socket_path=http_sock,
        workdir=workdir,
    )
    server.env["LOG_LEVEL"] = "warning"
    targets = {
        "unix": f"unix://{sock}",
        "tcp": f"127.0.0.1:{port}",
        "http-unix": f"http+unix://{http_sock}",
        "http-tcp": f"http://127.0.0.1:{http_port}",
    }
    results: dict[str, list[float]] = {}
    secured = tls_server(workdir)
    tls: dict[str, TlsOptions] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)  # killed on exit, even on error
        print(f"server: extauthz serve, demo policy, {targets['unix']} and {targets['tcp']}")
        if secured is None:
            print("https-tcp: skipped (no cryptography package to make certificates)")
        else:
            tls_process, targets["https-tcp"], tls["https-tcp"] = secured
            stack.callback(tls_process.kill)
            tls_process.start(wait=False)  # its readiness probe speaks plain HTTP
            wait_https(targets["https-tcp"], tls["https-tcp"])
            print(f"second server, TLS on its HTTP port: {targets['https-tcp']}")

        with ContractShieldClient(targets["unix"], timeout_ms=1000) as client:
            first = call(client)()
            assert getattr(first, "action", None) == "ALLOW", first
            once = call(client)
            timed(once, 10_000)  # warm-up
            hits = timed(once, args.hits)
            stats = client.stats()
            assert stats.hits >= args.hits, stats
        results["hit"] = hits
        print(line("cache hit (evaluate, sync)", hits))

        clients = {
            kind: ContractShieldClient(
                target, timeout_ms=1000, cache_enabled=False, tls=tls.get(kind)
            )
            for kind, target in targets.items()
        }
        try:
            for client in clients.values():
                timed(call(client), 300)  # warm-up: connection, server caches
            for _ in range(3):  # interleaved rounds: the machine is shared
                for kind, client in clients.items():
                    results.setdefault(kind, []).extend(timed(call(client), args.remote // 3))
            assert all(c.stats().errors == 0 for c in clients.values())
        finally:
            for client in clients.values():
                client.close()
        for kind in targets:
            print(line(f"remote evaluate over {kind} (no cache)", results[kind]))
        print("HTTP client libraries, the same POST /v1/check bytes (no SDK around them):")
        for name, samples in library_round_trips(http_sock, http_port, args.remote).items():
            print(line(f"  {name}", samples))

    try:
        from extauthz.decider import Decider
        from extauthz.middleware._common import EmbeddedDecider
        from extauthz.policy import load_policy
        from extauthz.policy.source import FixedPolicy

        decider = EmbeddedDecider(Decider(FixedPolicy(load_policy(DEMO_POLICY))))
        inp = describe("POST", PATH, headers=HEADERS, body=BODY, identity=IDENTITY)
        timed(lambda: decider.decide(inp), 300)  # warm-up
        embedded = timed(lambda: decider.decide(inp), args.remote)
        results["embedded"] = embedded
        print(line("embedded (adapter + engine, in-process)", embedded))
    except ImportError as exc:  # the embedded path needs the engine
        print(f"embedded: skipped ({exc})")

    shutil.rmtree(workdir, ignore_errors=True)
    u50, t50 = pct(results["unix"], 0.5), pct(results["tcp"], 0.5)
    u99, t99 = pct(results["unix"], 0.99), pct(results["tcp"], 0.99)
    print(f"ratio tcp/unix: p50 {t50 / u50:.2f}x  p99 {t99 / u99:.2f}x")
    h50 = pct(results["http-unix"], 0.5)
    print(
        f"ratio http-unix/unix (gRPC): p50 {h50 / u50:.2f}x (target <= 0.35x), "
        f"http-unix p50 {h50:.0f} us (target < 250 us on a quiet machine)"
    )
    if "https-tcp" in results:
        s50, s99 = pct(results["https-tcp"], 0.5), pct(results["https-tcp"], 0.99)
        p50, p99 = pct(results["http-tcp"], 0.5), pct(results["http-tcp"], 0.99)
        print(
            f"ratio https-tcp/http-tcp: p50 {s50 / p50:.2f}x ({s50:.0f} vs {p50:.0f} us), "
            f"p99 {s99 / p99:.2f}x ({s99:.0f} vs {p99:.0f} us)"
        )
    print(f"ratio remote(unix) p50 / cache hit p50: {u50 / pct(results['hit'], 0.5):.0f}x")
    hit50 = pct(results["hit"], 0.5)
    print(f"cache-hit target <= 10 us: p50 {hit50:.1f} us -> {'met' if hit50 <= 10 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
