"""``extauthz serve``: run the PDP (gRPC ext_authz on a Unix socket and/or TCP, plus HTTP)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the policy decision point for Envoy ext_authz",
        description="Flags beat environment variables (in brackets), which beat defaults.",
    )
    p.add_argument("--policy", dest="policy_path", help="policy file [POLICY_PATH]")
    p.add_argument(
        "--policy-base-dir",
        help="resolve schema/OpenAPI references against this directory [POLICY_BASE_DIR]",
    )
    p.add_argument("--unix-socket", help="serve gRPC on this Unix socket [UNIX_SOCKET]")
    p.add_argument("--socket-mode", help="socket file mode, octal (default 0660) [SOCKET_MODE]")
    p.add_argument("--grpc-port", help="serve gRPC on this TCP port, 0 = off [GRPC_PORT]")
    p.add_argument("--grpc-host", help="TCP gRPC bind address (default 0.0.0.0) [GRPC_HOST]")
    p.add_argument("--http-port", help="HTTP API/probes port, 0 = off (default 3100) [HTTP_PORT]")
    p.add_argument("--http-host", help="HTTP bind address (default 127.0.0.1) [HTTP_HOST]")
    p.add_argument(
        "--http-unix-socket",
        help="serve the HTTP API (and Envoy's HTTP-mode ext_authz) on this Unix socket "
        "[HTTP_UNIX_SOCKET]",
    )
    p.add_argument("--redis-url", help="shared webhook replay store [REDIS_URL]")
    p.add_argument("--log-level", help="debug|info|warning|error (default info) [LOG_LEVEL]")
    p.add_argument(
        "--no-hot-reload",
        dest="hot_reload",
        action="store_const",
        const=False,
        default=None,
        help="do not watch the policy file [HOT_RELOAD=false]",
    )
    p.add_argument("--reload-debounce-ms", help="quiet time before a reload [RELOAD_DEBOUNCE_MS]")
    p.add_argument(
        "--replay-fail-open",
        action="store_const",
        const=True,
        default=None,
        help="let webhooks through when the replay store is down [REPLAY_FAIL_OPEN]",
    )
    p.add_argument(
        "--check-deadline-ms", help="deny a check not decided in time [CHECK_DEADLINE_MS]"
    )
    p.add_argument("--grace-seconds", help="drain time on SIGTERM (default 5) [GRACE_SECONDS]")
    p.add_argument("--max-request-bytes", help="gRPC receive limit [MAX_REQUEST_BYTES]")
    p.add_argument("--tls-cert-file", help="PEM certificate for the TCP listeners [TLS_CERT_FILE]")
    p.add_argument("--tls-key-file", help="PEM private key for it [TLS_KEY_FILE]")
    p.add_argument(
        "--tls-client-ca-file", help="require client certs signed by this CA [TLS_CLIENT_CA_FILE]"
    )
    p.add_argument(
        "--no-http-tls",
        dest="http_tls",
        action="store_const",
        const=False,
        default=None,
        help="keep the HTTP listener plain when TLS is on [HTTP_TLS=false]",
    )
    p.add_argument(
        "--allow-request-policy",
        action="store_const",
        const="true",
        help="let POST /evaluate carry the caller's own policy (unsafe) [ALLOW_REQUEST_POLICY]",
    )
    p.add_argument(
        "--workers", help="worker processes, or auto = usable cores (default 1) [WORKERS]"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .._exceptions import InvalidConfig, InvalidPolicy, SocketInUse
    from ..server.config import ServerConfig
    from ._report import fail

    try:
        config = ServerConfig.resolve(args)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    from ..server.app import build_state, serve

    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("extauthz.server").info(
        "loading policy %s (schemas and OpenAPI documents are compiled now)", config.policy_path
    )
    if config.workers > 1:
        return _supervise(config)
    try:
        state = build_state(config)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    except InvalidPolicy as exc:
        return fail(f"extauthz serve: invalid policy:\n{exc}", 2)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(config, state))
    except SocketInUse as exc:
        return fail(f"extauthz serve: {exc}", 1)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)


def _supervise(config: Any) -> int:
    """N workers under a supervisor (``server.workers``); a bad policy is refused here."""
    from .._exceptions import InvalidConfig, InvalidPolicy
    from ..server.workers import Supervisor
    from ._report import fail

    try:
        return Supervisor(config).run()
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    except InvalidPolicy as exc:
        return fail(f"extauthz serve: invalid policy:\n{exc}", 2)


def _loop_factory() -> Any:
    """uvloop when installed (it roughly halves the HTTP stack's per-request cost), else asyncio."""
    import os

    if os.environ.get("EVENT_LOOP", "auto") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
