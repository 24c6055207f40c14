"""The SSRF check before and after it learned every parser's reading: same run, interleaved.

Loads ``extauthz/engine/ssrf.py`` and ``vulnerability.py`` as they were at a base revision
(default: the parent of the commit that introduced ``URL_TRIGGERS``) next to today's, and
times both on the same inputs in alternating rounds: ``ssrf_reason`` on benign URLs (the
hot path and the slow one), on hostile ones (each trick class), the whole vulnerability
check on a typical JSON body (gate included), and long hostile strings at two sizes (the
ratio shows linear growth). Prints the median µs per call of each side over the rounds, the
new/old ratio, and the noise (the spread between the rounds' quartiles, in % of the median).
Times are the process's CPU time, not wall time, so that other work on the machine counts less.
Run: ``.venv/bin/python bench/ssrf_bench.py [--base REV] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.decision import RuleHit  # noqa: E402
from extauthz.engine import ssrf as new_ssrf  # noqa: E402
from extauthz.engine import vulnerability as new_vulnerability  # noqa: E402

BENIGN = [
    "https://app.example.com/hooks/license",
    "https://api.github.com/repos/acme/app/issues?per_page=100&state=open",
    "http://10.0.0.5:8080/internal",  # internal, but plain: the hot path
    "https://user@example.com/p?next=/home",
    "https://b\u00fccher.example/katalog",
    "https://example.com/a\\b",
    "/api//v1/items",
    "Note: the call is at 12:30",
]
HOSTILE = [
    "http://example.com\\@127.0.0.1/",
    "http://example.com#@127.0.0.1/",
    "ht\ttp://169.254.169.254/latest/",
    "http://%31%32%37.0.0.1/",
    "http://loc\u00adal\u200bhost/",
    "http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11/",
    "http://0xa9.0376.43518/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://make-127-0-0-1-rr.1u.ms/",
    "file:/etc/passwd",
    "<URL:http://127.0.0.1/>",
]
BODY = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "device-42",
    "tenantId": "tenant-a",
    "callbackUrl": "https://app.example.com/hooks/license",
    "note": "Shipped 12:30, see https://status.example.com/incidents/42 for details",
    "tags": ["a", "b", "c:d"],
}
LONG = {
    "'@' repeated": lambda n: "http://" + "@" * n,
    "'a@' then 127.0.0.1": lambda n: "http://" + "a@" * (n // 2) + "127.0.0.1",
    "soft hyphens then localhost": lambda n: "http://" + "\u00ad" * n + "localhost",
    "tabs then a URL": lambda n: "\t" * n + "http://127.0.0.1/",
    "dashed nip.io label": lambda n: "http://" + "1-" * (n // 2) + "nip.io/",
    "a host list": lambda n: "http://" + ",".join(map(str, range(n // 6))),
}


def old_modules(base: str) -> tuple[types.ModuleType, types.ModuleType]:
    """ssrf.py and vulnerability.py at ``base``, importable side by side with today's."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{base}:{path}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    ssrf = types.ModuleType("extauthz.engine._bench_old_ssrf")
    sys.modules[ssrf.__name__] = ssrf
    exec(compile(source("extauthz/engine/ssrf.py"), "old ssrf.py", "exec"), ssrf.__dict__)
    text = source("extauthz/engine/vulnerability.py").replace(
        "from .ssrf import", "from ._bench_old_ssrf import"
    )
    vuln = types.ModuleType("extauthz.engine._bench_old_vulnerability")
    vuln.__package__ = "extauthz.engine"
    sys.modules[vuln.__name__] = vuln
    exec(compile(text, "old vulnerability.py", "exec"), vuln.__dict__)
    return ssrf, vuln


def default_base() -> str:
    introduced = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--format=%H", "-S", "URL_TRIGGERS", "--reverse", "--",
         "extauthz/engine/ssrf.py"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return f"{introduced[0]}~1" if introduced else "HEAD"


def per_call(fn: Callable[[], object], calls: int) -> float:
    """µs of this process's CPU per call (CPU time: the machine may be shared)."""
    t0 = time.process_time_ns()
    for _ in range(calls):
        fn()
    return (time.process_time_ns() - t0) / calls / 1000


def compare(old: Callable[[], object], new: Callable[[], object], rounds: int) -> str:
    """Alternating rounds (the order flips each round); median µs per call of each side."""
    t0 = time.perf_counter()
    calls = 1
    while time.perf_counter() - t0 < 0.01:  # about 10 ms a round and side
        old(), new()
        calls += 1
    samples: dict[str, list[float]] = {"old": [], "new": []}
    gc.disable()
    try:
        for r in range(rounds):
            order = (("old", old), ("new", new)) if r % 2 else (("new", new), ("old", old))
            for name, fn in order:
                samples[name].append(per_call(fn, calls))
    finally:
        gc.enable()
    m = {k: statistics.median(v) for k, v in samples.items()}
    noise = {
        k: 100 * (statistics.quantiles(v, n=4)[2] - statistics.quantiles(v, n=4)[0]) / m[k]
        for k, v in samples.items()
    }
    return (
        f"{m['old']:9.2f} {m['new']:9.2f} {m['new'] / m['old']:7.2f}x"
        f"   ±{noise['old']:4.0f}% ±{noise['new']:4.0f}%"
    )


def check(module: Any, cfg: Any, body: Any) -> Callable[[], object]:
    def run() -> object:
        hits: list[RuleHit] = []
        module.check(cfg, body, {}, False, hits)
        return hits

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="the old revision (git rev)")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    base = args.base or default_base()
    old_ssrf, old_vuln = old_modules(base)
    print(f"old: {base} ({subprocess.getoutput(f'git -C {ROOT} rev-parse --short {base}')})")
    print(f"{'input':58} {'old µs':>9} {'new µs':>9} {'new/old':>8}   noise (IQR)")

    def row(label: str, old: Callable[[], object], new: Callable[[], object]) -> None:
        print(f"{label[:58]:58} {compare(old, new, args.rounds)}", flush=True)

    for kind, urls in (("benign", BENIGN), ("hostile", HOSTILE)):
        print(f"-- ssrf_reason, {kind} (anywhere / named field)")
        for url in urls:
            for bare in (False, True):
                row(
                    f"{url!r}{' (named)' if bare else ''}",
                    lambda u=url, b=bare: old_ssrf.ssrf_reason(u, bare_host=b),
                    lambda u=url, b=bare: new_ssrf.ssrf_reason(u, bare_host=b),
                )
    print("-- the vulnerability check on a typical JSON body (gate, walk, detectors)")
    for label, fields in (
        ("defaults (SSRF everywhere)", None),
        ("SSRF on callbackUrl", ("callbackUrl",)),
    ):
        old_cfg = old_vuln.VulnerabilityConfig(ssrf_internal=old_vuln.Check(True, fields))
        new_cfg = new_vulnerability.VulnerabilityConfig(
            ssrf_internal=new_vulnerability.Check(True, fields)
        )
        row(label, check(old_vuln, old_cfg, BODY), check(new_vulnerability, new_cfg, BODY))
    print("-- long hostile values (new only): µs at n and 4n, and the ratio (4.0 is linear)")
    for label, make in LONG.items():
        small, large = make(25_000), make(100_000)
        a = min(
            per_call(lambda s=small: new_ssrf.ssrf_reason(s, bare_host=False), 3) for _ in range(5)
        )
        b = min(
            per_call(lambda s=large: new_ssrf.ssrf_reason(s, bare_host=False), 3) for _ in range(5)
        )
        print(f"{label:40} {a:10.0f} {b:10.0f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
