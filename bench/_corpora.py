"""Corpora for ``detectors_bench.py``: public attack payloads, and benign text from this machine.

Nothing here is committed data of another project. The attack corpora are read from clones
given on the command line (or the mirror paths the development machines use):

- OWASP Core Rule Set's regression tests (``tests/regression/tests/*/<rule>.yaml``): each test
  is a whole HTTP request (method, URI, headers, body) and says which rule ids must or must not
  fire. ``crs_requests`` turns each into what the PDP reads: the query's keys and values, the
  body (JSON parsed; a form split into keys and values; XML attributes and text and multipart
  parts extracted, which the PDP itself does not parse), and the header and cookie values
  other than the test harness's own (which the PDP does not inspect).
- PayloadsAllTheThings' payload lists (``*/Intruder/*.txt``): one payload a line, meant to be
  pasted into a URL or a field. ``patt_payloads`` reads a line as a query value would arrive
  (percent-decoded once when it holds escapes) and unescapes the few lines the list stores
  HTML-escaped.

Benign text is built from what is installed (``benign_units``): the standard library's
docstrings (technical prose with code), the long descriptions of the packages installed
beside this one (markdown and reStructuredText READMEs), Debian changelogs (commit-message
style entries, kept whole, newlines included), the project's own commit messages and docs,
and the licence texts. Code blocks (fenced or indented markdown, reStructuredText literal
blocks, doctest lines) are kept apart as ``code``: a field that legitimately carries shell
code is not one to run a command-injection check on.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import email.parser
import gzip
import json
import re
import subprocess
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import yaml

CRS_MIRROR = Path("/work/.mirror/coreruleset+coreruleset/repo")
PATT_MIRROR = Path("/work/.mirror/swisskyrepo+PayloadsAllTheThings/repo")
HOW_TO_GET = (
    "git clone https://github.com/coreruleset/coreruleset  (then --crs PATH)\n"
    "git clone https://github.com/swisskyrepo/PayloadsAllTheThings  (then --patt PATH)"
)
# Headers the CRS test harness sends with every request: never the payload.
_HARNESS_HEADERS = frozenset(
    {"host", "user-agent", "accept", "content-type", "content-length", "connection",
     "accept-encoding", "accept-language", "proxy-connection", "transfer-encoding"}
)  # fmt: skip
_HARNESS_AGENTS = ("OWASP CRS test agent", "ModSecurity CRS 3 Tests")


@dataclass
class Request:
    """What one corpus entry gives the detectors: the PDP's view, and what it does not read."""

    source: str  # "crs 932120-1", "patt Command Injection/Intruder/command_exec.txt:12"
    query: list[tuple[str, str]] = field(default_factory=list)
    body: object = None  # parsed JSON, a form as a dict, a text body, or None
    unparsed: list[str] = field(default_factory=list)  # XML/multipart values, headers, cookies
    where: str = "query"  # where the payload sits: query, json, form, text, xml, header, ...
    positive: bool = True  # CRS: the rule must fire (False: a test that it must not)
    paranoia: int = 1  # CRS: the paranoia level of the rule (1: default, 4: strictest)


# --- OWASP CRS ---------------------------------------------------------------------------


def crs_root(path: Path | None) -> Path | None:
    """The CRS regression tests folder, in a clone or a mirror's git directory (read via git)."""
    for base in (path, CRS_MIRROR):
        if base is not None and base.exists():
            return base
    return None


def _git_files(repo: Path, under: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every file under ``under`` at HEAD of a bare or normal git directory."""
    names = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", under],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    for name in filter(None, names):
        blob = subprocess.run(
            ["git", "-C", str(repo), "show", f"HEAD:{name}"], capture_output=True, check=True
        ).stdout
        yield name, blob.decode("utf-8", "replace")


def _tree_files(root: Path, under: str, pattern: str) -> Iterator[tuple[str, str]]:
    base = root / under
    if (root / ".git").exists() or base.is_dir():
        for f in sorted(base.rglob(pattern)):
            yield str(f.relative_to(root)), f.read_text(errors="replace")
    else:  # a bare mirror
        for name, text in _git_files(root, under):
            if Path(name).match(pattern):
                yield name, text


_RULE = re.compile(r"\bid:(\d{6})")
_LEVEL = re.compile(r"paranoia-level/(\d)")


def crs_paranoia(root: Path) -> dict[int, int]:
    """Each rule id's paranoia level, from the rules' ``tag:'paranoia-level/N'``."""
    levels: dict[int, int] = {}
    for _, text in _tree_files(root, "rules", "*.conf"):
        for block in re.split(r"\n(?=SecRule|SecAction)", text):
            ids = _RULE.findall(block)
            level = _LEVEL.search(block)
            if ids and level:
                levels[int(ids[0])] = int(level.group(1))
    return levels


def crs_requests(root: Path, rule_prefixes: tuple[str, ...]) -> list[Request]:
    """Every test of the CRS rules whose id starts with one of ``rule_prefixes``."""
    out: list[Request] = []
    levels = crs_paranoia(root)
    for name, text in _tree_files(root, "tests/regression/tests", "*.yaml"):
        rule = Path(name).stem
        if not rule.startswith(rule_prefixes):
            continue
        doc = yaml.safe_load(text) or {}
        for test in doc.get("tests") or ():
            for stage in test.get("stages") or ():
                stage = stage.get("stage", stage)  # the older format nests it once more
                req = _crs_request(f"crs {rule}-{test.get('test_id')}", stage.get("input") or {})
                outputs = stage.get("output") or {}
                log = outputs.get("log") or outputs
                expect = log.get("expect_ids") or []
                refuse = log.get("no_expect_ids") or []
                if int(rule) in expect:
                    req.positive = True
                elif int(rule) in refuse:
                    req.positive = False
                else:
                    continue  # a stage that tests something else (a status, a header)
                req.paranoia = levels.get(int(rule), 1)
                out.append(req)
    return out


def _crs_request(source: str, given: dict[str, object]) -> Request:
    method = str(given.get("method") or "GET")
    uri = str(given.get("uri") or "/")
    headers = {str(k): str(v) for k, v in (given.get("headers") or {}).items()}  # type: ignore[union-attr]
    data = given.get("data")
    if given.get("encoded_request"):
        method, uri, headers, data = _decode_raw(str(given["encoded_request"]))
    if isinstance(data, list):
        data = "\r\n".join(str(x) for x in data)
    req = Request(source)
    split = urlsplit(uri)
    req.query = parse_qsl(split.query, keep_blank_values=True)
    if split.query and not req.query:
        req.query = [(unquote_plus(split.query), "")]
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    for key, value in headers.items():
        lk = key.lower()
        if lk == "cookie":
            for part in value.split(";"):
                k, _, v = part.strip().partition("=")
                req.unparsed.extend((unquote(k), unquote(v)))
        elif lk not in _HARNESS_HEADERS or (lk == "user-agent" and value not in _HARNESS_AGENTS):
            req.unparsed.append(value)
    if data not in (None, ""):
        req.body, req.where = _crs_body(str(data), ctype, req.unparsed)
    elif not req.query:
        req.where = "path" if method != "GET" or "?" not in uri else "query"
    if req.where == "query" and not req.query and req.unparsed:
        req.where = "header"
    if req.where == "path":
        req.unparsed.append(unquote(split.path))
    return req


def _decode_raw(encoded: str) -> tuple[str, str, dict[str, str], str]:
    raw = base64.b64decode(encoded.replace("\n", "")).decode("utf-8", "replace")
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    method, _, rest = lines[0].partition(" ")
    uri = rest.rpartition(" ")[0] or rest
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return method, uri, headers, body


def _crs_body(data: str, ctype: str, unparsed: list[str]) -> tuple[object, str]:
    if "json" in ctype or data[:1] in "{[":
        with contextlib.suppress(ValueError):
            return json.loads(data), "json"
    if "xml" in ctype or data.lstrip().startswith("<?xml"):
        with contextlib.suppress(ET.ParseError):
            root = ET.fromstring(data)
            for el in root.iter():
                unparsed.extend(el.attrib.values())
                unparsed.extend(t for t in (el.text, el.tail) if t and t.strip())
            return None, "xml"
        unparsed.append(data)
        return None, "xml"
    if "multipart" in ctype:
        msg = email.parser.Parser().parsestr(f"Content-Type: {ctype}\r\n\r\n{data}")
        for part in msg.walk() if msg.is_multipart() else ():
            payload = part.get_payload(decode=False)
            if isinstance(payload, str):
                unparsed.append(payload.strip())
            unparsed.extend(str(v) for v in part.get_params(header="content-disposition") or ())
        if not msg.is_multipart():
            unparsed.append(data)
        return None, "multipart"
    if ("=" in data and "form" in ctype) or ("=" in data and not ctype):
        pairs = parse_qsl(data, keep_blank_values=True)
        if pairs:
            form: dict[str, str] = {}
            for k, v in pairs:
                form[k] = f"{form[k]},{v}" if k in form else v
            return form, "form"
    return data, "text"


# --- PayloadsAllTheThings ----------------------------------------------------------------


def patt_root(path: Path | None) -> Path | None:
    for base in (path, PATT_MIRROR):
        if base is not None and base.exists():
            return base
    return None


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def patt_payloads(root: Path, folder: str) -> list[Request]:
    """One request per line of each ``<folder>/Intruder*/*.txt`` list: the line as a query value."""
    out: list[Request] = []
    for name, text in _tree_files(root, folder, "*.txt"):
        if "/Intruder" not in name:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            value = unescape(line) if "&lt;" in line or "&quot;" in line else line
            if _ESCAPE.search(value):  # meant for a URL: the upstream reads it decoded
                value = unquote(value)
            out.append(Request(f"patt {name}:{n}", query=[("q", value)]))
    return out


# --- benign text -------------------------------------------------------------------------


@dataclass
class Benign:
    """Benign units by kind: ``prose`` (sentences and whole multi-line entries) and ``code``."""

    prose: dict[str, list[str]] = field(default_factory=dict)  # source -> units
    code: dict[str, list[str]] = field(default_factory=dict)

    def all_prose(self) -> list[str]:
        return [u for units in self.prose.values() for u in units]

    def all_code(self) -> list[str]:
        return [u for units in self.code.values() for u in units]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`*])")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MIN_UNIT = 12  # shorter lines are headings, table rules and list bullets


def split_text(text: str, prose: list[str], code: list[str]) -> None:
    """Paragraphs of prose into sentences; fenced, indented and literal blocks into ``code``."""
    in_fence = False
    literal_next = False
    para: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if para:
            joined = " ".join(x.strip() for x in para)
            for sentence in _SENTENCE_END.split(joined):
                if len(sentence) >= _MIN_UNIT:
                    prose.append(sentence)
            para.clear()
        if block:
            code.extend(x.strip() for x in block if len(x.strip()) >= 3)
            block.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            flush()
            in_fence = not in_fence
            continue
        stripped = line.strip()
        indented = line[:1] in (" ", "\t") and len(line) - len(line.lstrip()) >= 4
        if (
            in_fence
            or stripped.startswith((">>>", "...", "$ ", "% ", "# "))
            or (indented and (literal_next or not para))
        ):
            if para:
                flush()
            block.append(line)
            continue
        if not stripped:
            flush()
            literal_next = literal_next or False
            continue
        if block:
            flush()
        literal_next = stripped.endswith("::")
        para.append(line)
    flush()


def _stdlib_docstrings(limit_files: int) -> str:
    parts: list[str] = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts
    )
    for path in files[:limit_files]:
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    return "\n\n".join(parts)


def _package_descriptions(site: Path) -> str:
    parts: list[str] = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        text = meta.read_text(errors="replace")
        _, _, description = text.partition("\n\n")  # headers, then the long description
        parts.append(description)
    return "\n\n".join(parts)


def _changelog_entries(limit: int) -> list[str]:
    """Debian changelog entries, whole (a few lines each, like a commit message)."""
    entries: list[str] = []
    for path in sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz")):
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        for chunk in re.split(r"\n(?=\S)", text):
            body = [
                x.strip() for x in chunk.splitlines()[1:] if x.strip() and not x.startswith(" --")
            ]
            if body:
                entries.append("\n".join(body))
            if len(entries) >= limit:
                return entries
    return entries


def _commit_messages(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%B%x00"], capture_output=True, text=True
    ).stdout
    return [m.strip() for m in out.split("\x00") if m.strip()]


def benign_units(repo: Path, *, stdlib_files: int = 2000, changelog_entries: int = 4000) -> Benign:
    """The benign corpus (see the module docstring); deterministic on a given machine."""
    out = Benign()

    def add(source: str, text: str) -> None:
        prose = out.prose.setdefault(source, [])
        code = out.code.setdefault(source, [])
        split_text(text, prose, code)

    add("stdlib docstrings", _stdlib_docstrings(stdlib_files))
    site = Path(sysconfig.get_paths()["purelib"])
    add("package READMEs", _package_descriptions(site))
    licences = Path("/usr/share/common-licenses")
    if licences.is_dir():
        add(
            "licences",
            "\n\n".join(
                f.read_text(errors="replace") for f in sorted(licences.iterdir()) if f.is_file()
            ),
        )
    # Not this repository's docs: they quote attack strings on purpose.
    # Multi-line entries kept whole: a free-text field holds them so, newlines included.
    out.prose["Debian changelog entries"] = _changelog_entries(changelog_entries)
    out.prose["our commit messages"] = _commit_messages(repo)
    seen: set[str] = set()  # several packages share a changelog: count each text once
    for units in (*out.prose.values(), *out.code.values()):
        units[:] = [u for u in units if not (u in seen or seen.add(u))]  # type: ignore[func-returns-value]
    out.prose = {k: v for k, v in out.prose.items() if v}
    out.code = {k: v for k, v in out.code.items() if v}
    return out
