"""Each value detector against public attack corpora and benign text: detection, false
positives, and the cost per string of the detectors now against a baseline revision's.

Corpora (public data of other projects, never committed here; see ``bench/_corpora.py`` for
how each is read):

    git clone https://github.com/coreruleset/coreruleset            # --crs PATH
    git clone https://github.com/swisskyrepo/PayloadsAllTheThings   # --patt PATH

Without the options the bench looks for the mirror copies of the development machines and
skips a corpus it cannot find. Benign text comes from this machine (standard library
docstrings, installed packages' READMEs, Debian changelogs, licences, this repository's docs
and commit messages).

A payload counts as detected when the PDP, with only that detector on, reports its hit for
the request as the PDP reads it (query, JSON or form body); values the PDP does not read
(headers, cookies, XML, multipart) are given to the string detector directly and counted
apart. ``--misses FAMILY`` and ``--fp FAMILY`` print what was missed or flagged.

Run: ``.venv/bin/python bench/detectors_bench.py [--baseline main] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _corpora import (  # noqa: E402
    HOW_TO_GET,
    Benign,
    Request,
    benign_units,
    crs_requests,
    crs_root,
    patt_payloads,
    patt_root,
)

from extauthz.decision import RuleHit  # noqa: E402
from extauthz.engine import vulnerability as v  # noqa: E402
from extauthz.engine.checks import DETECTORS, Detector  # noqa: E402


def strings_of(req: Request) -> Iterator[str]:
    """Every key and string value of a request, unparsed ones included."""
    for k, val in req.query:
        yield k
        yield val
    stack = [req.body]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for k, val in node.items():
                yield str(k)
                stack.append(val)
        elif isinstance(node, list):
            stack.extend(node)
    yield from req.unparsed


_SHELL_OPERATOR = re.compile(r"[;&|`\n\r<>]|\$[({A-Za-z_@*]|\{[^{}\s]{1,40},")


_CODE = re.compile(
    r"<\?php|\bphp(?:info|version)\(|\b(?:system|exec|eval|passthru|shell_exec|popen)\(['\"$]"
    r"|\$\{@|\{\$\{|\{\{|\{%",
    re.I,
)
_PROBE = re.compile(r"[\s;&|`'\"\\]*")


def command_scope(req: Request) -> str | None:
    """Why a payload is not a command *injection* (None: it is one)."""
    strings = [s.strip() for s in strings_of(req)]
    if not any(_SHELL_OPERATOR.search(s) for s in strings):
        return "no shell operator: runs only if the whole value is run as a command"
    if all(_PROBE.fullmatch(s) for s in strings if _SHELL_OPERATOR.search(s)):
        return "a separator alone (a probe for errors), no command"
    if any(_CODE.search(s) for s in strings) and not any("echo" in s for s in strings):
        return "PHP code or a template (system(), phpinfo(), ${@...}, {{...}}): code injection"
    return None


@dataclass(frozen=True)
class Family:
    """A detector and where its payloads are in each corpus."""

    attr: str  # the detector's attribute name (VulnerabilityConfig)
    crs: tuple[str, ...]  # CRS rule-id prefixes of its family
    crs_not: tuple[str, ...] = ()  # rule ids of that range that belong to another detector
    patt: tuple[str, ...] = ()  # PayloadsAllTheThings folders with Intruder lists
    scope: Callable[[Request], str | None] | None = None  # why a payload is not of the family


FAMILIES = (
    Family("command_injection", ("932",), patt=("Command Injection",), scope=command_scope),
    Family("nosql_injection", ("942290",), patt=("NoSQL Injection",)),
    Family("ssrf_internal", ("934110", "934120", "934190")),
    Family("sql_injection", ("942",), crs_not=("942290",), patt=("SQL Injection",)),
    Family("xss", ("941",), patt=("XSS Injection",)),
    Family("path_traversal", ("930100", "930110"), patt=("Directory Traversal",)),
    Family("prototype_pollution", ("934130",)),
)
_BY_ATTR = {d.attr: d for d in DETECTORS}


def only(attr: str) -> v.VulnerabilityConfig:
    return v.VulnerabilityConfig(**{d.attr: v.Check(d.attr == attr) for d in DETECTORS})


@dataclass
class Outcome:
    total: int = 0
    pdp: int = 0  # found in what the PDP reads
    unparsed: int = 0  # found only in headers, cookies, XML or multipart values
    missed: list[Request] = field(default_factory=list)
    found: list[Request] = field(default_factory=list)


def judge(cfg: v.VulnerabilityConfig, detector: Detector, reqs: Iterable[Request]) -> Outcome:
    out = Outcome()
    for req in reqs:
        out.total += 1
        query: dict[str, str] = {}
        for k, val in req.query:
            query[k] = f"{query[k]},{val}" if k in query else val
        hits: list[RuleHit] = []
        v.check(cfg, req.body, query, False, hits)
        if hits:
            out.pdp += 1
            out.found.append(req)
        elif detector.strings is not None and any(detector.strings(s) for s in req.unparsed):
            out.unparsed += 1
            out.found.append(req)
        else:
            out.missed.append(req)
    return out


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f} %" if d else "  n/a"


def show(req: Request) -> str:
    parts = [f"{k}={val!r}" for k, val in req.query]
    if req.body is not None:
        parts.append(f"body={req.body!r}")
    parts += [f"[{req.where}] {s!r}" for s in req.unparsed]
    return f"{req.source}: " + "  ".join(parts)[:300]


def detection(args: argparse.Namespace, benign: Benign) -> dict[str, list[str]]:
    """Print the figures; return each costed detector's attack strings (for ``cost``)."""
    attacks: dict[str, list[str]] = {}
    crs = crs_root(args.crs)
    patt = patt_root(args.patt)
    if crs is None or patt is None:
        print(f"corpus missing (crs: {crs}, patt: {patt}); to get them:\n{HOW_TO_GET}")
    prose = benign.all_prose()
    code = benign.all_code()
    print(f"benign: {len(prose)} prose units, {len(code)} code lines")
    for fam in FAMILIES:
        if args.family and fam.attr not in args.family:
            continue
        detector = _BY_ATTR[fam.attr]
        cfg = only(fam.attr)
        corpora: list[tuple[str, list[Request]]] = []
        if crs is not None:
            reqs = [
                r for r in crs_requests(crs, fam.crs) if not r.source[4:].startswith(fam.crs_not)
            ]
            corpora.append(("CRS positive", [r for r in reqs if r.positive]))
            corpora.append(("CRS must-not-fire", [r for r in reqs if not r.positive]))
        if patt is not None:
            for folder in fam.patt:
                corpora.append((f"PATT {folder}", patt_payloads(patt, folder)))
        print(f"\n== {detector.name}")
        for name, reqs in corpora:
            if not reqs:
                continue
            positive = not name.endswith("must-not-fire")
            o = judge(cfg, detector, reqs)
            if positive and fam.attr in COSTED and detector.strings is not None:
                found = [x for r in o.found for x in strings_of(r) if detector.strings(x)]
                attacks.setdefault(fam.attr, []).extend(found)
            print(
                f"  {name:28s} {o.total:5d} payloads  detected {o.pdp + o.unparsed:5d} "
                f"({pct(o.pdp + o.unparsed, o.total)}; {o.unparsed} only in values the PDP "
                f"does not read)"
            )
            if name.startswith("CRS") and positive:
                for level in (1, 2, 3, 4):
                    at = [r for r in reqs if r.paranoia == level]
                    got = sum(1 for r in o.found if r.paranoia == level)
                    if at:
                        print(f"    paranoia level {level}: {got}/{len(at)} ({pct(got, len(at))})")
            if positive and fam.scope is not None:
                reasons: dict[str, list[Request]] = {}
                for req in reqs:
                    why = fam.scope(req)
                    if why is not None:
                        reasons.setdefault(why, []).append(req)
                out = {id(r) for rs in reasons.values() for r in rs}
                inside = [r for r in reqs if id(r) not in out]
                got = sum(1 for r in o.found if id(r) not in out)
                for why, rs in reasons.items():
                    print(f"    not this family: {len(rs):4d} ({why})")
                print(
                    f"    {'of the family':26s} {len(inside):5d} payloads  detected {got:5d} "
                    f"({pct(got, len(inside))})"
                )
                if args.misses and fam.attr in args.misses:
                    for req in o.missed:
                        if id(req) not in out:
                            print("      miss " + show(req))
            elif args.misses and fam.attr in args.misses:
                for req in o.missed if positive else o.found:
                    print(("      miss " if positive else "      flagged ") + show(req))
        strings = detector.strings
        if strings is None:
            continue
        for kind, units in (("prose", benign.prose), ("code", benign.code)):
            for source, texts in units.items():
                flagged = [t for t in texts if strings(t)]
                print(
                    f"  FP {kind:5s} {source:28s} {len(flagged):4d} / {len(texts):6d} "
                    f"({pct(len(flagged), len(texts))})"
                )
                if args.fp and fam.attr in args.fp:
                    for t in flagged[:40]:
                        print(f"      fp {strings(t)}: {t[:160]!r}")
    return attacks


# --- cost: the detectors now against a baseline revision's, same run, interleaved --------

COSTED = ("command_injection", "nosql_injection")


def baseline_check(rev: str, attr: str) -> Detector | None:
    """The detector ``attr`` as revision ``rev`` declares it (its module run from git)."""
    path = f"extauthz/engine/checks/{attr}.py"
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        return None
    spec = importlib.util.spec_from_loader(f"extauthz.engine.checks._baseline_{attr}", None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "extauthz.engine.checks"
    exec(compile(shown.stdout, f"{rev}:{path}", "exec"), module.__dict__)
    check = getattr(module, "CHECK", None)
    return check if isinstance(check, Detector) else None


def gated(detector: Detector) -> Callable[[str], object]:
    """What the phase pays for one string: the gate's search, then the detector if it opens."""
    strings = detector.strings
    assert strings is not None
    triggers = detector.string_triggers or ()
    gate = v._gate(triggers)
    return lambda s: gate(s) is not None and strings(s)


def per_string_us(fn: Callable[[str], object], texts: list[str]) -> float:
    t0 = time.perf_counter()
    for text in texts:
        fn(text)
    return (time.perf_counter() - t0) / len(texts) * 1e6


def cost(args: argparse.Namespace, benign: Benign, attacks: dict[str, list[str]]) -> None:
    clean = benign.all_prose()[:3000]
    print(f"\n== cost per string (µs, median of {args.rounds} interleaved rounds)")
    print(f"   baseline: {args.baseline}; clean: {len(clean)} benign units")
    for attr in COSTED:
        old_check = baseline_check(args.baseline, attr)
        if old_check is None:
            print(f"  {attr}: no baseline at {args.baseline}")
            continue
        old, new = gated(old_check), gated(_BY_ATTR[attr])
        for label, texts in (("clean", clean), ("attack", attacks.get(attr, []))):
            if not texts:
                continue
            runs: dict[str, list[float]] = {"old": [], "new": []}
            for r in range(args.rounds):
                order = (("old", old), ("new", new)) if r % 2 else (("new", new), ("old", old))
                for name, fn in order:
                    runs[name].append(per_string_us(fn, texts))
            o, n = statistics.median(runs["old"]), statistics.median(runs["new"])
            print(
                f"  {_BY_ATTR[attr].name:18s} {label:6s} {len(texts):5d} strings  "
                f"old {o:6.2f}  new {n:6.2f}  (x{n / o:.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crs", type=Path, help="a clone of coreruleset/coreruleset")
    parser.add_argument("--patt", type=Path, help="a clone of swisskyrepo/PayloadsAllTheThings")
    parser.add_argument("--family", nargs="*", help="detector attribute names (default: all)")
    parser.add_argument("--misses", nargs="*", default=[], help="print the misses of these")
    parser.add_argument("--fp", nargs="*", default=[], help="print the prose flagged by these")
    parser.add_argument("--baseline", default="main", help="git revision to compare costs with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-cost", action="store_true", help="detection figures only")
    args = parser.parse_args()
    benign = benign_units(ROOT)
    attacks = detection(args, benign)
    if not args.no_cost:
        cost(args, benign, attacks)


if __name__ == "__main__":
    main()
