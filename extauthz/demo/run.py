"""``extauthz demo``: start the stack, run the tour, print the table, stop everything."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

from .stack import DemoStack, StackInfo, leftovers
from .tokens import mint_jwt
from .tour import demo_steps, format_header, format_row, run_tour, summary


def run_demo(
    *,
    keep_running: bool = False,
    use_redis: bool = True,
    authz_mode: str = "grpc",
    out: TextIO = sys.stdout,
) -> int:
    """0 when every tour step matched its expected status (and the stack stopped cleanly)."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    restore = _terminate_as_interrupt()
    stack = DemoStack(use_redis=use_redis, authz_mode=authz_mode)
    workdir = None
    pids: tuple[int, ...] = ()
    ok = False
    try:
        say("ContractShield demo: the real stack, locally, no Docker")
        if use_redis:
            say("starting Redis (if available), the demo API, the PDP and Envoy ...")
        else:
            say("starting the demo API, the PDP and Envoy (--no-redis: in-memory replay store) ...")
        info = stack.open()
        workdir, pids = info.workdir, info.pids
        _describe(info, say)
        say()
        say(format_header())
        results = run_tour(
            info.envoy_url,
            demo_steps(info.policy_file),
            on_result=lambda r: say(format_row(r)),
        )
        say()
        say(summary(results))
        ok = all(r.ok for r in results)
        if keep_running:
            _print_curl(info, say)
            _wait_for_interrupt()
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        redis = " and Redis" if stack.redis is not None else ""
        say(f"stopping Envoy, the PDP{',' if redis else ' and'} the demo API{redis} ...")
        with _signals_ignored():  # a second Ctrl-C must not abandon half-stopped processes
            stack.close()
        restore()
    if workdir is not None:
        left = leftovers(workdir, pids)
        if left:
            say("NOT clean, still there: " + "; ".join(left))
            return 1
        code = stack.server_exit_code
        say(f"stopped cleanly (PDP exit code {code}); removed {workdir}")
    return 0 if ok else 1


def _describe(info: StackInfo, say: Callable[[str], None]) -> None:
    say(f"  temp dir  {info.workdir}")
    say(f"  policy    {info.policy_file} (a copy: the tour edits it)")
    if info.authz_mode == "http":
        say(
            f"  PDP       HTTP (Envoy's HTTP ext_authz mode) on unix:{info.pdp_socket}, "
            f"probes/metrics {info.pdp_http_url}"
        )
    else:
        say(f"  PDP       gRPC on unix:{info.pdp_socket}, probes/metrics {info.pdp_http_url}")
    say(f"  Envoy     {info.envoy_url} (admin {info.envoy_admin_url})")
    say(f"  upstream  {info.upstream_url} (echoes what Envoy forwarded)")
    say(f"  replay    {info.redis_note}")
    names = ("PDP", "Envoy", "Redis")[: len(info.pids)]
    say(f"  pids      {' '.join(str(pid) for pid in info.pids)} ({', '.join(names)})")


def _print_curl(info: StackInfo, say: Callable[[str], None]) -> None:
    token = mint_jwt("alice", "acme", ("licenses:write",))
    url = info.envoy_url
    body = '{"licenseKey":"ACME-0001-2345-6789","deviceId":"device-42","tenantId":"acme"}'
    ssrf = body[:-1] + ',"callbackUrl":"http://169.254.169.254/latest/meta-data/"}'
    activate = f"{url}/api/v1/licenses/activate"
    say()
    say("The stack keeps running. Try (Ctrl-C to stop everything):")
    say(f"  export TOKEN={token}")
    say(
        f"  curl -i {activate} -H 'authorization: Bearer '$TOKEN "
        f"-H 'content-type: application/json' -d {shlex.quote(body)}"
    )
    say(
        f"  curl -i {activate} -H 'authorization: Bearer '$TOKEN "
        f"-H 'content-type: application/json' -d {shlex.quote(ssrf)}"
    )
    say(f"  curl -i {url}/api/v1/licenses/ACME-0001-2345-6789   # no token: 403 auth.required")
    say(f"  curl -s {info.pdp_http_url}/metrics | grep contractshield")
    say(f"  $EDITOR {info.policy_file}   # hot reload: saved edits apply within a second")


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    while not stop.wait(3600):
        pass


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminate_as_interrupt() -> Callable[[], None]:
    """SIGTERM behaves like Ctrl-C, so ``kill`` also tears the stack down cleanly."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
