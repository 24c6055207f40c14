"""Helpers for the middleware tests (a unique module name: tests use rootdir imports)."""

from __future__ import annotations

from typing import Any

from extauthz import Identity


def identity_from_header(value: str | None) -> Identity | None:
    """Test stand-in for the app's own token verification: ``x-test-user: alice@t-1``."""
    if not value:
        return None
    subject, _, tenant = value.partition("@")
    return Identity(authenticated=True, subject=subject, tenant=tenant or None)


def asgi_identity(scope: Any) -> Identity | None:
    for key, value in scope["headers"]:
        if key == b"x-test-user":
            return identity_from_header(value.decode())
    return None


def wsgi_identity(environ: Any) -> Identity | None:
    return identity_from_header(environ.get("HTTP_X_TEST_USER"))
