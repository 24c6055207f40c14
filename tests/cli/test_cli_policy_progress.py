"""``policy check`` and ``from-openapi`` say what they are doing with a large description.

A Stripe-sized document takes seconds to read, check and compile; before, the commands
printed nothing until the end. Lines go to stderr (stdout keeps the result) and only for a
document of 1 MiB or more, so small policies print exactly what they printed before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.specgen import dump, stripe_like

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_large_description_reports_each_stage_on_stderr(tmp_path: Path) -> None:
    size = dump(stripe_like(4, operations=160, object_parameters=False), tmp_path / "api.yaml")
    assert size >= 1024 * 1024
    (tmp_path / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./api.yaml}\n'
    )
    proc = _run("check", str(tmp_path / "p.yaml"))
    assert proc.returncode == 0, proc.stderr
    # (a slow load also prints a one-line notice after a second: not ours)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("extauthz policy ")]
    expected = [
        f"extauthz policy check: reading {tmp_path / 'api.yaml'} ({size / 1e6:.1f} MB)",
        f"extauthz policy check: {tmp_path / 'api.yaml'}: read in ",
        f"extauthz policy check: {tmp_path / 'api.yaml'}: OpenAPI 3.0.0, 160 operations, checked in ",
        "extauthz policy check: compiling 160 routes from ./api.yaml",
        "extauthz policy check: compiled 160 routes in ",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert "OK" in proc.stdout and "160 routes" in proc.stdout

    gen = _run("from-openapi", str(tmp_path / "api.yaml"))
    assert gen.returncode == 0
    assert "extauthz policy from-openapi: reading" in gen.stderr
    assert "policyVersion" in gen.stdout


def test_a_small_policy_prints_what_it_printed_before() -> None:
    proc = _run("check", str(REPO / "policies" / "demo.yaml"))
    assert proc.returncode == 0 and proc.stderr == ""
