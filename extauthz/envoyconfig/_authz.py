"""The authorization filters: ``jwt_authn``, ``ext_authz`` (gRPC or HTTP service) and
``header_mutation``, which removes every client copy of the identity and decision headers
(``IDENTITY_HEADER_PREFIXES``) before either of them runs, in both modes."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from .._exceptions import InvalidConfig
from ._options import (
    HTTP_PATH_PREFIX,
    HTTP_PAYLOAD_HEADER,
    IDENTITY_HEADER_PREFIXES,
    JWT_FILTER,
    JWT_PAYLOAD_KEY,
    JWT_PROVIDER,
    PDP_CLUSTER,
    EnvoyConfigOptions,
    demo_jwks,
)
from ._proto import ms


def jwt_authn(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import DataSource
    from envoy_data_plane.envoy.config.route.v3 import RouteMatch
    from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
        JwtAuthentication,
        JwtProvider,
        JwtRequirement,
        JwtRequirementOrList,
        RequirementRule,
    )
    from envoy_data_plane.google.protobuf import Empty

    if opts.jwks_file is not None:
        jwks = DataSource(filename=os.fspath(opts.jwks_file))
    else:
        jwks = DataSource(inline_string=demo_jwks())
    # requires_any [provider, allow_missing]: a valid token sets the payload metadata, no token
    # passes through (the policy's auth.required answers it), a bad token is a 401 from Envoy.
    requirement = JwtRequirement(
        requires_any=JwtRequirementOrList(
            requirements=[
                JwtRequirement(provider_name=JWT_PROVIDER),
                JwtRequirement(allow_missing=Empty()),
            ]
        )
    )
    # gRPC mode reads the payload from metadata; HTTP mode from a header (which a client's copy
    # never reaches: ``header_mutation`` removes it first).
    if opts.authz_mode == "http":
        provider = JwtProvider(
            local_jwks=jwks, forward=False, forward_payload_header=HTTP_PAYLOAD_HEADER
        )
    else:
        provider = JwtProvider(local_jwks=jwks, forward=False, payload_in_metadata=JWT_PAYLOAD_KEY)
    return JwtAuthentication(
        providers={JWT_PROVIDER: provider},
        rules=[RequirementRule(match=RouteMatch(prefix="/"), requires=requirement)],
    )


def ext_authz(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import ApiVersion, GrpcService, GrpcServiceEnvoyGrpc
    from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
        BufferSettings,
        ExtAuthz,
    )
    from envoy_data_plane.envoy.type.v3 import HttpStatus

    service: dict[str, Any]
    if opts.authz_mode == "http":
        from envoy_data_plane.envoy.type.matcher.v3 import (
            ListStringMatcher,
            RegexMatcher,
            StringMatcher,
        )

        service = {
            "http_service": _http_service(opts),
            # every client header, as gRPC mode sends them (HTTP mode's default is five)
            "allowed_headers": ListStringMatcher(
                patterns=[StringMatcher(safe_regex=RegexMatcher(regex=".*"))]
            ),
        }
    else:
        service = {
            "grpc_service": GrpcService(
                envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=PDP_CLUSTER),
                timeout=_check_timeout(opts),
            ),
            "metadata_context_namespaces": [JWT_FILTER],
        }
    return ExtAuthz(
        **service,
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=opts.failure_mode_allow,
        status_on_error=HttpStatus(code=_status_code(opts.status_on_error)),
        # One byte over the policy's maxBodyBytes: a body of exactly the limit arrives whole,
        # one byte more arrives over the limit (or cut and marked partial) and the PDP
        # answers 413; never a body cut at the limit whose unread tail reaches the upstream.
        with_request_body=BufferSettings(
            max_request_bytes=opts.max_body_bytes + 1,
            allow_partial_message=True,
            pack_as_bytes=True,
        ),
    )


def _check_timeout(opts: EnvoyConfigOptions) -> timedelta:
    return ms(opts.timeout_ms if opts.check_timeout_ms is None else opts.check_timeout_ms)


def header_mutation() -> Any:
    """Remove every request header named ``x-jwt-*`` or ``x-contractshield-*``.

    jwt_authn writes its payload header (or claim headers) only when a token verifies and
    leaves a client's copy otherwise; ext_authz's answer overwrites the decision headers it
    sets, not the ones it leaves out; a route's ``request_headers_to_remove`` runs after the
    filters. So the client's copies go first, in an HTTP filter ahead of both.
    """
    from envoy_data_plane.envoy.config.common.mutation_rules.v3 import (
        HeaderMutation as Mutation,
    )
    from envoy_data_plane.envoy.config.common.mutation_rules.v3 import (
        HeaderMutationRemoveOnMatch as RemoveOnMatch,
    )
    from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import (
        HeaderMutation,
        Mutations,
    )
    from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher

    removals = [
        Mutation(remove_on_match=RemoveOnMatch(key_matcher=StringMatcher(prefix=prefix)))
        for prefix in IDENTITY_HEADER_PREFIXES
    ]
    return HeaderMutation(mutations=Mutations(request_mutations=removals))


def _http_service(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import HeaderValue, HttpUri
    from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
        AuthorizationRequest,
        AuthorizationResponse,
        HttpService,
    )
    from envoy_data_plane.envoy.type.matcher.v3 import (
        ListStringMatcher,
        StringMatcher,
    )

    from ..envoy.http_response import METADATA_HEADERS

    def exact(*names: str) -> Any:
        return ListStringMatcher(patterns=[StringMatcher(exact=n) for n in names])

    return HttpService(
        server_uri=HttpUri(
            uri=f"http://{PDP_CLUSTER}", cluster=PDP_CLUSTER, timeout=_check_timeout(opts)
        ),
        path_prefix=HTTP_PATH_PREFIX,
        authorization_request=AuthorizationRequest(
            headers_to_add=[
                HeaderValue(key="x-contractshield-client-address", value=_client_formatter(opts)),
                HeaderValue(key="x-contractshield-content-length", value="%REQ(content-length)%"),
            ],
        ),
        authorization_response=AuthorizationResponse(
            allowed_upstream_headers=exact(
                "x-contractshield-decision",
                "x-contractshield-route",
                "x-contractshield-subject",
                "x-contractshield-tenant",
            ),
            # grpc-status and grpc-message: a denied gRPC call's status (``envoy.grpc_status``)
            allowed_client_headers=exact(
                "content-type",
                "x-contractshield-decision",
                "x-contractshield-decision-id",
                "grpc-status",
                "grpc-message",
            ),
            dynamic_metadata_from_headers=exact(*METADATA_HEADERS),
        ),
    )


def _client_formatter(opts: EnvoyConfigOptions) -> str:
    """HTTP mode's client address. Directly reached, the TCP peer (as gRPC mode's
    ``source.address``): without ``use_remote_address`` Envoy's DOWNSTREAM_REMOTE_ADDRESS is
    the last ``x-forwarded-for`` entry, which a client writes. Behind a proxy that setting is
    on (``_client_address``), so DOWNSTREAM_REMOTE_ADDRESS is the PROXY protocol's client or
    the trusted hop's ``x-forwarded-for`` entry."""
    if opts.behind_proxy:
        return "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    return "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"


def _status_code(status: int) -> Any:
    from envoy_data_plane.envoy.type.v3 import StatusCode

    known = {int(code) for code in StatusCode}
    if status not in known:
        raise InvalidConfig(f"status_on_error: Envoy has no HTTP status {status}")
    return StatusCode(status)
