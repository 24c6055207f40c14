"""PEM files into an ``ssl.SSLContext``, every failure an ``InvalidConfig`` naming the setting.

Shared by the client's ``TlsOptions`` (settings ``tls.ca_file``, ...) and the server's TLS
listeners (``TLS_CERT_FILE``, ...), so that an unreadable, broken or mismatched file reads the
same from either side: ``SETTING: path: reason``. Standard library only: the client imports it.
"""

from __future__ import annotations

import ssl

from ._exceptions import InvalidConfig


def read(setting: str, path: str) -> bytes:
    """The file's bytes; ``InvalidConfig`` naming ``setting`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidConfig(f"{setting}: {path}: {exc.strerror or exc}") from exc


def load_chain(context: ssl.SSLContext, cert: tuple[str, str], key: tuple[str, str]) -> None:
    """``context.load_cert_chain`` for ``(setting, path)`` pairs of a certificate and its key."""
    (cert_setting, cert_file), (key_setting, key_file) = cert, key
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise InvalidConfig(
            f"{cert_setting}: {cert_file}: certificate and {key_setting} {key_file} "
            f"do not load as a pair ({exc.reason or exc})"
        ) from exc


def load_ca(context: ssl.SSLContext, setting: str, path: str) -> None:
    """``context.load_verify_locations`` for a CA file named by ``setting``."""
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise InvalidConfig(
            f"{setting}: {path}: not a PEM CA certificate ({exc.reason or exc})"
        ) from exc
