"""A tiny upstream app that echoes what reached it (method, path, query, headers, body size and
SHA-256, so a test can tell the body that arrived is the one it sent).

Tests look at the echo to prove what Envoy forwarded: the decision headers we added and the
client headers we removed; ``UpstreamThread.count`` proves what did not get through. Runs
in-process on a background thread (``UpstreamThread``) or as a subprocess
(``python -m extauthz.devstack.upstream --port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import _process, free_port


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    data = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "bodyBytes": len(body),
        "bodySha256": hashlib.sha256(body).hexdigest(),
    }
    return web.Response(text=json.dumps(data), content_type="application/json")


def create_app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = echo,
) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


class UpstreamThread(_process.Managed):
    """The echo app on its own event loop in a daemon thread; a context manager.

    ``count`` is how many requests reached it (to prove a blocked one never did).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.count = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.count += 1
        return await echo(request)

    def start(self, timeout: float = 10.0) -> UpstreamThread:
        started = threading.Event()
        errors: list[BaseException] = []

        async def boot() -> None:
            runner = web.AppRunner(create_app(self._handle), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port).start()
            self._runner = runner

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="upstream", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("upstream did not start")
        if errors:
            raise errors[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._loop = self._thread = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    release = stop


def main() -> None:  # pragma: no cover - exercised by benches
    parser = argparse.ArgumentParser(description="echo upstream for ContractShield tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":  # pragma: no cover
    main()
