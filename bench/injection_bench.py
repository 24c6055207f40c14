"""SQL-injection and XSS detectors: detection rate on known payloads, false positives on prose.

Compares the detectors the ``sqlInjection``/``xss`` checks use (libinjection's tokenizers,
via ``libinjection-python``) with a typical regex list (the alternative: keyword and tag
patterns as WAF rule sets write them). Payloads: ``tests/engine/data/sqli.txt`` and
``xss.txt``; prose: ``tests/engine/data/prose.txt`` plus every line of the licence texts
Debian ships in ``/usr/share/common-licenses`` (real English, with quotes and punctuation).
Also prints the cost per string and how it grows with the input (linear time).

Compiler-free candidates (issue 25: ``libinjection-python`` needs a C compiler) are measured
the same way when importable: ``web-datafilter`` (pure Python on the ``regex`` package, a
hit is status ``DETECTED``). Install one into a scratch directory and put it on PYTHONPATH.
Run: ``.venv/bin/python bench/injection_bench.py``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.engine.vulnerability import sqli_reason, xss_reason  # noqa: E402

DATA = ROOT / "tests" / "engine" / "data"
LICENSES = Path("/usr/share/common-licenses")
_SQL_RE = re.compile(
    r"('|\")\s*(or|and)\s|union\s+(all\s+)?select|;\s*(drop|insert|delete|update|exec)\s"
    r"|--\s*$|/\*|\bsleep\s*\(|waitfor\s+delay|\bor\s+\d+\s*=\s*\d+",
    re.I,
)
_XSS_RE = re.compile(
    r"<\s*script|javascript:|\bon[a-z]+\s*=|<\s*(iframe|svg|img|object|embed)", re.I
)


def lines(path: Path) -> list[str]:
    return [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]


def prose() -> list[str]:
    out = lines(DATA / "prose.txt")
    if LICENSES.is_dir():
        for f in sorted(LICENSES.iterdir()):
            if f.is_file():
                out.extend(lines(f))
    return out


def rate(detect: Callable[[str], object], texts: list[str]) -> tuple[int, list[str]]:
    hits = [t for t in texts if detect(t)]
    return len(hits), hits


def cost(detect: Callable[[str], object], text: str, n: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        detect(text)
    return (time.perf_counter() - t0) / n * 1e6


def candidates() -> dict[str, tuple[Callable[[str], object], Callable[[str], object]]]:
    """Compiler-free detectors that are installed: name -> (SQL injection, XSS)."""
    found: dict[str, tuple[Callable[[str], object], Callable[[str], object]]] = {}
    try:
        import DataFilter  # type: ignore[import-not-found]  # web-datafilter
    except ImportError:
        pass
    else:
        found["web-datafilter"] = (
            lambda v: DataFilter.strSQLICheck(v).status == "DETECTED",
            lambda v: DataFilter.strXSSCheck(v).status == "DETECTED",
        )
    return found


def main() -> None:
    text = prose()
    others = candidates()
    print(f"prose: {len(text)} lines; payloads: sqli.txt, xss.txt")
    for n, (kind, libinj, regex, payload_file) in enumerate(
        (
            ("SQL injection", sqli_reason, _SQL_RE.search, "sqli.txt"),
            ("XSS", xss_reason, _XSS_RE.search, "xss.txt"),
        )
    ):
        payloads = lines(DATA / payload_file)
        detectors = [("libinjection", libinj), ("regex list", regex)]
        detectors += [(name, pair[n]) for name, pair in others.items()]
        for name, detect in detectors:
            found, _ = rate(detect, payloads)
            fp, examples = rate(detect, text)
            print(
                f"{kind:13s} {name:12s} detection {found}/{len(payloads)} "
                f"({100 * found / len(payloads):5.1f} %)   false positives on prose "
                f"{fp}/{len(text)} ({100 * fp / len(text):5.2f} %)"
                + (f"   e.g. {examples[0][:60]!r}" if examples else "")
            )
        sample = "The quick brown fox jumps over the lazy dog, or so they say."
        grow = [cost(libinj, "a'b or " * k, 20) for k in (1000, 2000, 4000)]
        print(
            f"{kind:13s} libinjection {cost(libinj, sample):5.2f} µs per 60-char string; "
            f"7/14/28 KB of hostile input {grow[0]:.0f}/{grow[1]:.0f}/{grow[2]:.0f} µs "
            f"(x{grow[2] / grow[0]:.1f} for x4: linear)"
        )
        for name, detect in detectors[1:]:
            print(f"{kind:13s} {name:12s} {cost(detect, sample, 500):5.2f} µs per 60-char string")


if __name__ == "__main__":
    main()
