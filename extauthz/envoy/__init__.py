"""The Envoy adapter: two pure functions between Envoy's ext_authz protos and our model."""

from .request import AdapterOptions, check_request_to_context
from .response import decision_to_check_response

__all__ = ["AdapterOptions", "check_request_to_context", "decision_to_check_response"]
