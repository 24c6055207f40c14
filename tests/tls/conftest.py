"""Certificates made at test time (never committed): one CA the PDP trusts, one it does not."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _tls_support import Pki

from extauthz.devstack.certs import make_ca


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="cs-pki-") as tmp:
        d = Path(tmp)
        ca = make_ca(d / "ca", "contractshield-test-ca")
        other = make_ca(d / "other", "someone-elses-ca")
        yield Pki(
            dir=d,
            ca=ca,
            server=ca.issue(d, "pdp", dns=("pdp.test", "localhost"), ips=("127.0.0.1",)),
            client=ca.issue(d, "envoy-client", client=True),
            other_ca=other,
            stranger=other.issue(d, "stranger", client=True),
        )
