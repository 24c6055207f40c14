"""CEL works when xds-protos's empty ``cel/__init__.py`` has replaced common-expression-language's.

Both distributions ship ``cel/__init__.py``; whichever is installed last wins (uv installs in
parallel, so the order varies). Here the clobbered layout is made for real: a ``cel`` package
with an empty ``__init__.py`` beside the real extension module, first on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cel.cel as extension


def test_the_engine_compiles_cel_with_an_empty_cel_package(tmp_path: Path) -> None:
    package = tmp_path / "cel"
    package.mkdir()
    (package / "__init__.py").write_text("")  # what xds-protos installs
    so = Path(extension.__file__)
    (package / so.name).symlink_to(so)
    code = (
        "import cel\n"
        "assert not hasattr(cel, 'compile'), 'the layout under test is not the clobbered one'\n"
        "from extauthz.policy import load_policy_text\n"
        'p = load_policy_text(\'policyVersion: "0.1"\\nroutes:\\n  - id: r\\n'
        "    match: {path: /r}\\n    rules:\\n      - {id: x, type: cel, config: "
        "{expr: \"request.method == \\'GET\\'\"}}\\n')\n"
        "print(p.route_ids)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "('r',)" in out.stdout
