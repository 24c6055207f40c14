"""``extauthz.client`` stands alone: grpcio, xds-protos/protobuf and cachetools only.

Two proofs in fresh interpreters: (1) importing it loads none of the server's dependencies
and no third-party package outside the allowed set; (2) with the server's dependencies made
unimportable (as if never installed), the client still imports and gets real decisions from
the real server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

FORBIDDEN = (
    "watchdog",
    "redis",
    "prometheus_client",
    "yaml",
    "aiohttp",
    "httptools",
    "cel",
    "fastjsonschema",
    "re2",
    "jsonschema",
    "starlette",
    "flask",
    "httpx",
    "extauthz.engine",
    "extauthz.policy",
    "extauthz.server",
    "extauthz.policy.reload",
    "extauthz.envoy",
    "extauthz.server.metrics",
)
# Third-party top-level packages the client may load: grpcio (which itself imports
# grpc_health when grpcio-health-checking happens to be installed, and grpc_tools when
# grpcio-tools is, as in the dev extra), xds-protos and its proto namespaces, protobuf,
# cachetools.
ALLOWED_THIRD_PARTY = {
    "cachetools",
    "envoy",
    "google",
    "grpc",
    "grpc_health",
    "grpc_tools",
    "typing_extensions",
    "udpa",
    "validate",
    "xds",
    "cython_runtime",
}


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_import_loads_only_the_client_dependencies() -> None:
    proc = run_python(
        """
        import json, sys
        import extauthz.client
        tops = {m.split(".")[0] for m in sys.modules}
        print(json.dumps({
            "modules": sorted(sys.modules),
            "third_party": sorted(
                t for t in tops if t not in sys.stdlib_module_names and not t.startswith("_")
            ),
        }))
        """
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    loaded = set(seen["modules"])
    leaked = [m for m in FORBIDDEN if m in loaded or any(x.startswith(m + ".") for x in loaded)]
    assert leaked == []
    assert set(seen["third_party"]) - {"extauthz"} <= ALLOWED_THIRD_PARTY
    assert {"grpc", "cachetools", "envoy"} <= set(seen["third_party"])


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def test_client_works_with_the_server_dependencies_uninstalled(pdp: Any) -> None:
    blocker = BLOCKER.format(blocked=list(FORBIDDEN))
    proc = run_python(
        blocker
        + """
import yaml_probe_guard if False else None
""".replace("import yaml_probe_guard if False else None", "")
        + f"""
try:
    import yaml  # the blocker really hides it
    print("YAML_IMPORTABLE")
except ModuleNotFoundError:
    pass
from extauthz import Identity
from extauthz.client import ContractShieldClient
ident = Identity(authenticated=True, subject="alice", tenant="t-1")
for target in ({pdp.target("unix")!r}, {pdp.target("tcp")!r}):
    with ContractShieldClient(target, timeout_ms=2000) as client:
        ok = client.evaluate("GET", "/api/v1/licenses/L-1", identity=ident)
        denied = client.evaluate("GET", "/api/v1/licenses/L-1")
        print(ok.action, denied.action, denied.status_code, ",".join(denied.rule_ids))
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert "YAML_IMPORTABLE" not in proc.stdout
    assert proc.stdout.splitlines() == ["ALLOW BLOCK 403 auth.required"] * 2


def test_public_names_are_curated() -> None:
    import extauthz.client as client
    import extauthz.middleware as middleware

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, rest
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    for module in (client, middleware):
        assert module.__all__ == sorted(module.__all__, key=isort_style)
        assert all(hasattr(module, name) for name in module.__all__)
    assert {"ContractShieldClient", "AsyncContractShieldClient", "ClientStats"} <= set(
        client.__all__
    )
    assert {"RemoteASGIMiddleware", "EmbeddedWSGIMiddleware"} <= set(middleware.__all__)
