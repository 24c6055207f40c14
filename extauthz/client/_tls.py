"""TLS options for a client talking to a PDP on TCP (the server side is ``server/tls.py``).

One ``TlsOptions`` serves both transports: gRPC gets channel credentials (``credentials()``),
HTTP an ``ssl.SSLContext`` (``ssl_context()``), so what is trusted, presented and checked is
decided here once for both.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import grpc

from .. import _pem
from .._exceptions import InvalidConfig


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Trust ``ca_file`` (None: the system roots); with ``cert_file``/``key_file``, present a
    client certificate (the PDP's ``TLS_CLIENT_CA_FILE`` mTLS). ``server_name`` replaces the
    target's host as the name the PDP's certificate must carry."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidConfig("tls: give both cert_file and key_file (or neither)")

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials; the files are read now (``InvalidConfig`` if unreadable)."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read("ca_file", self.ca_file),
            private_key=_read("key_file", self.key_file),
            certificate_chain=_read("cert_file", self.cert_file),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for ``https://`` targets, as strict as gRPC's: TLS 1.2+, the PDP's
        certificate verified against ``ca_file`` (or the system roots) and its name checked
        (``server_hostname(host)``); the client certificate for mTLS. The files are read now,
        so an unreadable or broken one is ``InvalidConfig`` at construction, not per call."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca_file is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            _read("ca_file", self.ca_file)  # names the file when it cannot be read
            _pem.load_ca(context, "tls.ca_file", self.ca_file)
        if self.cert_file is not None and self.key_file is not None:
            _read("cert_file", self.cert_file)
            _read("key_file", self.key_file)
            _pem.load_chain(
                context, ("tls.cert_file", self.cert_file), ("tls.key_file", self.key_file)
            )
        return context

    def server_hostname(self, host: str) -> str:
        """The name sent as SNI and checked against the PDP's certificate (gRPC's
        ``ssl_target_name_override`` does both as well)."""
        return self.server_name if self.server_name is not None else host


def _read(name: str, path: str | None) -> bytes | None:
    return None if path is None else _pem.read(f"tls.{name}", path)
