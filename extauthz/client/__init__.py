"""Standalone ext_authz client: ``ContractShieldClient`` / ``AsyncContractShieldClient``.

Speaks gRPC ext_authz or HTTP (``POST /v1/check`` over ``http://``, ``https://`` or a Unix
socket, standard library only). Needs only grpcio, xds-protos (protobuf) and cachetools; it
never imports the engine or the server's dependencies, so an app can talk to a central PDP
without installing them.
"""

from ._cache import DEFAULT_CACHE_BYPASS_HEADERS, DEFAULT_CACHE_IGNORED_HEADERS, cache_key
from ._client import (
    DEFAULT_CACHE_ENABLED,
    DEFAULT_CACHE_MAX_SIZE,
    DEFAULT_CACHE_TTL_MS,
    DEFAULT_FAIL_OPEN,
    DEFAULT_FAIL_OPEN_DECISION,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY_MS,
    DEFAULT_TIMEOUT_MS,
    FAIL_OPEN_RULE_ID,
    AsyncContractShieldClient,
    ClientStats,
    ContractShieldClient,
)
from ._http_transport import AsyncHttpTransport, HttpTransport
from ._request import CheckInput, ClaimNames, build_check_request, describe
from ._response import Verdict, to_verdict
from ._tls import TlsOptions
from ._transport import AsyncGrpcTransport, AsyncTransport, GrpcTransport, Transport

__all__ = [
    "DEFAULT_CACHE_BYPASS_HEADERS",
    "DEFAULT_CACHE_ENABLED",
    "DEFAULT_CACHE_IGNORED_HEADERS",
    "DEFAULT_CACHE_MAX_SIZE",
    "DEFAULT_CACHE_TTL_MS",
    "DEFAULT_FAIL_OPEN",
    "DEFAULT_FAIL_OPEN_DECISION",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_DELAY_MS",
    "DEFAULT_TIMEOUT_MS",
    "FAIL_OPEN_RULE_ID",
    "AsyncContractShieldClient",
    "AsyncGrpcTransport",
    "AsyncHttpTransport",
    "AsyncTransport",
    "CheckInput",
    "ClaimNames",
    "ClientStats",
    "ContractShieldClient",
    "GrpcTransport",
    "HttpTransport",
    "TlsOptions",
    "Transport",
    "Verdict",
    "build_check_request",
    "cache_key",
    "describe",
    "to_verdict",
]
