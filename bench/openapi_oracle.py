"""Agreement with openapi-core on generated requests (issue 28 item 7), with a bigger budget
than the suite's ``tests/oracle/test_openapi_oracle.py``.

For each document (the OAI-shaped examples, a Stripe-shaped and a GitHub-shaped one from
``bench/specgen.py``), ``-n`` requests are generated from the description (valid ones, and
one-mutation invalid ones) and decided by us and by openapi-core; prints, per document, the
agreement rate, how often each side matched the expected verdict, and the disagreements by
kind. Run: ``PYTHONPATH=. .venv/bin/python bench/openapi_oracle.py [-n 300] [--show 5]``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.oracle._oracle import (  # noqa: E402
    Outcome,
    cases,
    decide,
    describe,
    iter_subjects,
    oracle_error,
)


def run(subject, n: int, seed: int) -> list[Outcome]:  # type: ignore[no-untyped-def]
    out: list[Outcome] = []

    @settings(max_examples=n, derandomize=seed == 0, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def go(data: st.DataObject) -> None:
        out.append(decide(subject, data.draw(cases(subject))))

    go()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="requests per document")
    ap.add_argument("--ops", type=int, default=120, help="operations in the shaped documents")
    ap.add_argument("--seed", type=int, default=0, help="0: derandomized (the suite's order)")
    ap.add_argument("--show", type=int, default=3, help="disagreements shown per kind")
    ap.add_argument("--only", help="one document by name")
    args = ap.parse_args()
    total = agree = 0
    reasons: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for subject in iter_subjects(Path(tmp), stripe_ops=args.ops):
            if args.only and subject.name != args.only:
                continue
            outs = run(subject, args.n, args.seed)
            ok = sum(o.agree for o in outs)
            total += len(outs)
            agree += ok
            valid = sum(o.case.valid for o in outs)
            print(f"{subject.name}: {len(outs)} requests ({valid} valid), agreement "
                  f"{ok / len(outs):.1%}; ours right {sum(o.we_are_right for o in outs)}, "
                  f"oracle right {sum(o.oracle == o.case.valid for o in outs)}, "
                  f"oracle undecided {sum(o.oracle is None for o in outs)}")  # fmt: skip
            kinds: dict[str, list[Outcome]] = collections.defaultdict(list)
            for o in outs:
                if not o.agree:
                    who = "ours wrong" if not o.we_are_right else "oracle wrong"
                    why = oracle_error(o) or "UNEXPLAINED"
                    kinds[f"{who}, {o.case.mutation or 'valid'}: {why}"].append(o)
                    reasons[why] += 1
            for kind, items in sorted(kinds.items()):
                print(f"  {kind}: {len(items)}")
                for o in items[: args.show]:
                    print(f"    {describe(o)}")
    print(f"all: {agree}/{total} agree ({agree / max(total, 1):.1%})")
    for why, n in reasons.most_common():
        print(f"  disagreements, {why}: {n}")


if __name__ == "__main__":
    main()
