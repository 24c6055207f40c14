"""TLS options for a client talking to a PDP on TCP (the server side is ``server/tls.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

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


def _read(name: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidConfig(f"tls.{name}: {path}: {exc.strerror or exc}") from exc
