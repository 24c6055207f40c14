"""Every dependency floor in pyproject.toml is a version that works (issue 25 item 1).

Once per run: ``uv`` resolves ``.[demo]`` with every direct dependency at its lowest allowed
version (``--resolution lowest-direct``) from PyPI alone, as a user's machine would (no uv or
pip configuration of this machine: ``UV_NO_CONFIG``, the default index, no find-links), into a
fresh venv outside the repository. Then the smoke test: ``policy check``, and ``extauthz demo``
(``serve``, a real Envoy, ten checks through it, a hot reload). A floor that is not installable
shows as a resolved version above it; one that does not work fails the smoke test.

Bounded: the install ~10-60 s (uv's cache), the demo ~10 s; each step has a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600
PYPI = "https://pypi.org/simple"

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)


def _uv() -> str:
    """The ``uv`` the dev extra installs, beside this interpreter."""
    candidate = Path(sys.executable).parent / "uv"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("uv")
    assert found, "uv is missing: pip install -e '.[dev]' installs it"
    return found


def _env() -> dict[str, str]:
    """This environment without uv/pip settings or the repo on the path: a user's defaults."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("UV_")}
    env.update(UV_NO_CONFIG="1", UV_DEFAULT_INDEX=PYPI, UV_PYTHON_DOWNLOADS="never")
    return env


def _run(cmd: list[str], *, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [
        Requirement(r)
        for r in (*project["dependencies"], *project["optional-dependencies"]["demo"])
    ]
    env = {"sys_platform": sys.platform, "platform_machine": os.uname().machine}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


@pytest.fixture(scope="module")
def floors_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("floors") / "v"
    base_python = getattr(sys, "_base_executable", sys.executable)
    proc = _run([_uv(), "venv", "--quiet", "--python", base_python, str(where)], cwd=where.parent)
    assert proc.returncode == 0, proc.stderr
    proc = _run(
        [_uv(), "pip", "install", "--quiet", "--python", str(where / "bin" / "python"),
         "--resolution", "lowest-direct", f"{ROOT}[demo]"],
        cwd=where.parent, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return where


def _installed(venv: Path) -> dict[str, Version]:
    code = (
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)\n"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code], cwd=venv)
    assert out.returncode == 0, out.stderr
    pairs = (line.split() for line in out.stdout.splitlines() if line.strip())
    return {canonicalize_name(name): Version(version) for name, version in pairs}


def test_each_direct_dependency_resolves_to_its_floor(floors_venv: Path) -> None:
    installed = _installed(floors_venv)
    above = {}
    for req in _direct_requirements():
        (floor,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
        got = installed[canonicalize_name(req.name)]
        if got != floor:
            above[req.name] = f"floor {floor}, resolved {got}"
    assert above == {}, f"floors no resolution can reach (raise them): {above}"
    assert "libinjection-python" not in installed  # the [injection] extra: no compiler needed


def test_smoke_policy_check_serve_and_checks_through_envoy(floors_venv: Path) -> None:
    bin_dir = floors_venv / "bin"
    policy = _run([str(bin_dir / "extauthz"), "policy", "demo-path"], cwd=floors_venv)
    assert policy.returncode == 0, policy.stderr
    assert str(floors_venv) in policy.stdout  # the venv's own copy, not the clone's
    check = _run([str(bin_dir / "extauthz"), "policy", "check", policy.stdout.strip()],
                 cwd=floors_venv)  # fmt: skip
    assert check.returncode == 0 and ": OK (" in check.stdout, check.stderr
    demo = _run([str(bin_dir / "extauthz"), "demo", "--no-redis"], cwd=floors_venv, timeout=180)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "all 10 steps matched expectations" in demo.stdout


def test_without_the_injection_extra_such_a_policy_is_refused(
    floors_venv: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        'policyVersion: "0.1"\nroutes:\n  - id: r\n    match: {method: GET, path: /r}\n'
        "    vulnerability: {sqlInjection: true}\n"
    )
    out = _run([str(floors_venv / "bin" / "extauthz"), "policy", "check", str(policy)],
               cwd=tmp_path)  # fmt: skip
    assert out.returncode == 1
    assert "routes[0].vulnerability.sqlInjection: needs libinjection" in out.stderr
    assert "pip install 'extauthz[injection]'" in out.stderr
