"""Real URL parsers as batch subprocesses, and the oracle that says where a reading goes.

Each parser is a small program in ``data/url_parsers/`` (Node's WHATWG ``URL``, Python's
``urlsplit`` and ``urlopen``, Go's ``net/url``, Java's ``URI`` and ``URL``) that reads one URL
per line (base64 of its UTF-8) and writes the ``[parser, scheme, host]`` readings as JSON,
one line per URL. Go and Java are compiled once per session into a temporary directory; a
missing toolchain is a skip with the reason (``.ci/run`` installs them).

The oracle judges a reading by what the resolver would do with the host, using real tools
where they exist: Python's ``idna`` codec (what ``socket`` applies to a ``str`` host) and
glibc's ``getaddrinfo(AI_NUMERICHOST)`` (the ``inet_aton`` forms), then the check's own
classification of the canonical address or ASCII name (tested on its own elsewhere).
(The module name is unique on purpose: pytest's rootdir import mode shares one namespace.)
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from extauthz.engine.ssrf import host_reason

DATA = Path(__file__).parent / "data" / "url_parsers"
# Schemes whose URL reads a local file, whatever the host, for the parsers that return them.
LOCAL_FILE_SCHEMES = frozenset({"file", "jar", "netdoc"})
# Schemes whose host is a network host (a single-label name is looked up through the search
# domains); an app's own scheme ("myapp://settings") names no host.
NETWORK_SCHEMES = frozenset({"", "http", "https", "ws", "wss", "ftp", "gopher", "redis"})

_DNS_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")

Reading = tuple[str, str, str]  # parser, scheme, host


@dataclass(frozen=True, slots=True)
class Parser:
    name: str
    argv: tuple[str, ...]

    def read(self, urls: Sequence[str]) -> list[list[Reading]]:
        """The readings of each URL, in order (one subprocess for the whole batch)."""
        lines = "".join(base64.b64encode(u.encode("utf-8")).decode() + "\n" for u in urls)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        done = subprocess.run(
            self.argv, input=lines, capture_output=True, text=True, timeout=300, env=env,
            encoding="utf-8", check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{self.name}: {done.stderr[-2000:]}"
        out = [[tuple(r) for r in json.loads(line)] for line in done.stdout.splitlines()]
        assert len(out) == len(urls), f"{self.name}: {len(out)} answers for {len(urls)} URLs"
        return out  # type: ignore[return-value]


def node_parser() -> Parser | str:
    node = shutil.which("node")
    if node is None:
        return "node is not installed (.ci/run installs nodejs)"
    return Parser("node", (node, str(DATA / "whatwg.js")))


def python_parser() -> Parser:
    return Parser("python", (sys.executable, str(DATA / "urlopen_probe.py")))


def go_parser(workdir: Path) -> Parser | str:
    go = shutil.which("go")
    if go is None:
        return "the Go toolchain is not installed (.ci/run installs golang-go)"
    binary = workdir / "urlparse"
    env = {**os.environ, "GOCACHE": str(workdir / "gocache"), "GOPATH": str(workdir / "gopath")}
    env["GO111MODULE"] = "off"
    done = subprocess.run(
        [go, "build", "-o", str(binary), str(DATA / "urlparse.go")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Parser("go", (str(binary),))


def java_parser(workdir: Path) -> Parser | str:
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        return "no JDK (javac) is installed (.ci/run installs default-jdk-headless)"
    done = subprocess.run(
        [javac, "-d", str(workdir), str(DATA / "JavaUrl.java")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Parser("java", (java, "-Xshare:auto", "-cp", str(workdir), "JavaUrl"))


def where(reading: Reading) -> str | None:
    """Why a parser's reading reaches an internal host or a local file, or ``None``."""
    parser, scheme, host = reading
    scheme = scheme.lower()
    if scheme in LOCAL_FILE_SCHEMES:
        return f"{parser} reads a local file ({scheme}:)"
    if not host:
        return None
    reason = canonical_host_reason(host)
    if reason is None:
        return None
    if reason.startswith("single-label") and scheme not in NETWORK_SCHEMES:
        return None
    return f"{parser} reaches {host!r}: {reason}"


def canonical_host_reason(host: str) -> str | None:
    """The host as the resolver reads it (real codec, real numeric parse), classified."""
    h = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
    if ":" in h:  # an IPv6 literal, maybe with a zone ("%eth0" or "%25eth0")
        try:
            addr = ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
        return host_reason(str(addr))
    try:
        ascii_host = h.encode("idna").decode("ascii")  # what socket does with a str host
    except UnicodeError:
        return None  # the resolver is never asked
    try:
        info = socket.getaddrinfo(ascii_host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        # a name, looked up as it is: one with "%", "@", "\\" or a space finds nothing
        return host_reason(ascii_host) if _DNS_NAME.fullmatch(ascii_host) else None
    return host_reason(str(ipaddress.ip_address(info[0][4][0])))
