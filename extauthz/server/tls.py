"""TLS and mTLS for the TCP listeners (gRPC and HTTP): one set of PEM files, reloaded on change.

``TLS_CERT_FILE`` + ``TLS_KEY_FILE`` turn TLS on; ``TLS_CLIENT_CA_FILE`` adds mTLS (a client
must present a certificate signed by that CA). The Unix socket stays plaintext: its file mode
and group are its access control. Files are checked at start-up (a bad or mismatched file is
``InvalidConfig``, the server does not start); afterwards a change is picked up without a
restart, like the policy: the gRPC listener asks for the current files on every new
connection (``grpc.dynamic_ssl_server_credentials``), the HTTP listener re-opens its socket
with a new context (``listeners.HttpTcpListener``). A change that does not load (a
half-written file) keeps the last good files and is logged.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import _pem
from .._exceptions import InvalidConfig

if TYPE_CHECKING:
    import grpc

    from .config import ServerConfig

log = logging.getLogger("extauthz.server")

Stamp = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @classmethod
    def from_config(cls, config: ServerConfig) -> TlsFiles | None:
        if config.tls_cert_file is None:
            return None
        assert config.tls_key_file is not None  # ServerConfig.validate refuses half a setting
        return cls(config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file)

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def paths(self) -> tuple[str, ...]:
        return (self.cert_file, self.key_file) + (
            (self.client_ca_file,) if self.client_ca_file else ()
        )


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes of one good load, and the files' stamps when they were read."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    stamp: Stamp


def _stamp(files: TlsFiles) -> Stamp:
    out = []
    for path in files.paths():
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def load(files: TlsFiles) -> TlsMaterial:
    """Read and check the files; ``InvalidConfig`` as ``SETTING: path: reason`` otherwise."""
    stamp = _stamp(files)
    raw: dict[str, bytes] = {}
    for setting, path in (
        ("TLS_CERT_FILE", files.cert_file),
        ("TLS_KEY_FILE", files.key_file),
        ("TLS_CLIENT_CA_FILE", files.client_ca_file),
    ):
        if path is not None:
            raw[setting] = _pem.read(setting, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _pem.load_chain(context, ("TLS_CERT_FILE", files.cert_file), ("TLS_KEY_FILE", files.key_file))
    if files.client_ca_file is not None:
        _pem.load_ca(context, "TLS_CLIENT_CA_FILE", files.client_ca_file)
    return TlsMaterial(
        raw["TLS_CERT_FILE"], raw["TLS_KEY_FILE"], raw.get("TLS_CLIENT_CA_FILE"), stamp
    )


class TlsReloader:
    """Holds the current ``TlsMaterial``; ``refresh()`` reloads it when a file changed."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._material = load(files)  # start-up: a bad file stops the server here
        self._refused: Stamp | None = None
        self._lock = threading.Lock()
        self.generation = 0

    @property
    def material(self) -> TlsMaterial:
        return self._material

    def refresh(self) -> bool:
        """True when new files were loaded (stat calls only when nothing changed)."""
        stamp = _stamp(self.files)
        if stamp == self._material.stamp or stamp == self._refused:
            return False
        with self._lock:
            if stamp == self._material.stamp:
                return False
            try:
                material = load(self.files)
            except InvalidConfig as exc:
                self._refused = stamp
                log.error("TLS files changed but do not load; keeping the previous ones: %s", exc)
                return False
            self._material, self._refused = material, None
            self.generation += 1
        log.info("TLS files reloaded (%s)", ", ".join(self.files.paths()))
        return True

    # --- gRPC ------------------------------------------------------------------------------

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        import grpc

        m = self._material
        return grpc.ssl_server_certificate_configuration([(m.key, m.cert)], m.client_ca)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials whose files are re-checked at every new connection's handshake."""
        import grpc

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            return self._grpc_config() if self.refresh() else None

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), fetch, require_client_authentication=self.files.mutual
        )

    # --- HTTP ------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A server context from the current files (TLS 1.2+, client cert required for mTLS)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.files.cert_file, self.files.key_file)
        if self.files.client_ca_file is not None:
            context.load_verify_locations(cadata=self._material.client_ca.decode("ascii"))  # type: ignore[union-attr]
            context.verify_mode = ssl.CERT_REQUIRED
        return context
