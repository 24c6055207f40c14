"""The engine is pure: importing it pulls in no I/O stack (grpc, protobuf, http, yaml, redis).

(``socket`` itself is not on the list: ``importlib.metadata``, used by jsonschema, imports it
through ``email.utils``; what matters is that no network or file stack is wired in.)
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "grpc",
    "google.protobuf",
    "aiohttp",
    "httptools",
    "yaml",
    "redis",
    "http.client",
    "httpx",
    "watchdog",
    "extauthz.policy",
    "extauthz.server",
    "extauthz.envoy",
)


def test_engine_imports_no_io_modules() -> None:
    code = (
        "import sys, json\n"
        "import extauthz.engine, extauthz.engine.pipeline\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(out.stdout))
    bad = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert bad == [], f"the engine imported I/O modules: {bad}"
    assert "extauthz.engine.pipeline" in loaded  # the probe itself worked
