"""Throw-away PKI for the TLS tests (made at test time, never committed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extauthz.devstack.certs import CertificateAuthority, KeyPair


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: CertificateAuthority
    server: KeyPair  # pdp.test, localhost, 127.0.0.1
    client: KeyPair  # signed by ca
    other_ca: CertificateAuthority
    stranger: KeyPair  # a client certificate from other_ca

    def issue_server(self, name: str = "pdp-renewed") -> KeyPair:
        return self.ca.issue(self.dir, name, dns=("pdp.test", "localhost"), ips=("127.0.0.1",))
