"""Build hook only (metadata lives in pyproject.toml): copy policies/ and envoy/ into the wheel.

They stay at the repository's top level for users of a clone; a wheel gets them as
``extauthz/_shipped/`` (see ``extauthz/_shipped.py``). Editable installs read the clone.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("policies", "envoy")


class BuildPyWithShippedData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "extauthz" / "_shipped" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithShippedData})
