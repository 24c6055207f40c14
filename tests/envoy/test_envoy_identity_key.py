"""The identity cache key is the jwt_authn namespace's plain (not deterministic) bytes: still a
correct key."""

from __future__ import annotations

import itertools
from typing import Any

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf import json_format

from extauthz.envoy import AdapterOptions, check_request_to_context

PAYLOAD: dict[str, Any] = {
    "sub": "u-key",
    "tenant": "t-1",
    "scope": "a b",
    "nested": {"x": 1, "y": [1, "two", {"z": True}]},
}


def _request(payload: dict[str, Any]) -> CheckRequest:
    http = {"id": "1", "method": "GET", "path": "/", "host": "api"}
    meta = {"filterMetadata": {"envoy.filters.http.jwt_authn": {"jwt_payload": payload}}}
    data = {"attributes": {"request": {"http": http}, "metadataContext": meta}}
    return json_format.ParseDict(data, CheckRequest())


def test_equal_payloads_in_any_map_order_give_equal_identities() -> None:
    options = AdapterOptions()
    identities = []
    for order in itertools.permutations(PAYLOAD):
        req = _request({key: PAYLOAD[key] for key in order})
        identities.append(check_request_to_context(req, options).identity)
    first = identities[0]
    assert (first.subject, first.tenant, first.scopes) == ("u-key", "t-1", ("a", "b"))
    assert dict(first.claims) == PAYLOAD
    assert all(identity == first for identity in identities)
    assert len(options._identities) <= len(identities)  # a cache miss at worst


def test_a_payload_differing_anywhere_gets_its_own_identity() -> None:
    options = AdapterOptions()
    base = check_request_to_context(_request(PAYLOAD), options).identity
    assert check_request_to_context(_request(dict(PAYLOAD)), options).identity is base
    changed = {**PAYLOAD, "nested": {"x": 1, "y": [1, "two", {"z": False}]}}
    other = check_request_to_context(_request(changed), options).identity
    assert other is not base and other.claims["nested"]["y"][2] == {"z": False}
    renamed = check_request_to_context(_request({**PAYLOAD, "sub": "u-other"}), options)
    assert renamed.identity.subject == "u-other"


def _request_with(namespace: dict[str, Any]) -> CheckRequest:
    http = {"id": "1", "method": "GET", "path": "/", "host": "api"}
    meta = {"filterMetadata": {"envoy.filters.http.jwt_authn": namespace}}
    data = {"attributes": {"request": {"http": http}, "metadataContext": meta}}
    return json_format.ParseDict(data, CheckRequest())


def test_other_entries_in_the_namespace_do_not_change_the_identity() -> None:
    """The key covers the whole namespace (e.g. ``header_in_metadata`` too): only the payload counts."""
    options = AdapterOptions()
    alone = check_request_to_context(_request(PAYLOAD), options).identity
    for header in ({"alg": "RS256", "kid": "k1"}, {"alg": "RS256", "kid": "k2"}):
        namespace = {"jwt_payload": PAYLOAD, "jwt_header": header}
        identity = check_request_to_context(_request_with(namespace), options).identity
        assert identity == alone and dict(identity.claims) == PAYLOAD
    again = _request_with({"jwt_payload": PAYLOAD, "jwt_header": {"alg": "RS256", "kid": "k1"}})
    first = check_request_to_context(again, options).identity
    assert check_request_to_context(again, options).identity is first  # a hit


def test_namespace_without_the_payload_key_stays_anonymous_on_repeat() -> None:
    options = AdapterOptions()
    req = _request_with({"jwt_header": {"alg": "RS256"}, "other": PAYLOAD})
    for _ in range(2):  # not cached as an identity: the second look-up is anonymous too
        identity = check_request_to_context(req, options).identity
        assert not identity.authenticated and identity.subject is None
    assert options._identities == {}
    custom = AdapterOptions(jwt_metadata_key="other")
    assert check_request_to_context(req, custom).identity.subject == "u-key"
