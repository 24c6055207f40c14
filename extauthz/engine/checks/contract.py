"""The contract: the body against the route's JSON Schema (``engine.contract``) and the
declared path, query and header parameters (``engine.parameters``)."""

from __future__ import annotations

from ._kinds import CONTRACT, HitSet

SCHEMA_INVALID = "contract.schema.invalid"
UNKNOWN_FIELD = "contract.unknownField"
PARAMETER_INVALID = "contract.parameter.invalid"
PARAMETER_UNKNOWN = "contract.parameter.unknown"
MEDIA_TYPE = "contract.mediaType"  # a body in a type the operation does not accept: 415
PROTOVALIDATE = "contract.protovalidate"  # a gRPC message breaks a buf.validate constraint
GRPC_STREAMING = "contract.grpcStreaming"  # a streaming gRPC method the route does not check

CHECK = HitSet(
    name="contract",
    hits=(
        SCHEMA_INVALID,
        UNKNOWN_FIELD,
        PARAMETER_INVALID,
        PARAMETER_UNKNOWN,
        MEDIA_TYPE,
        PROTOVALIDATE,
        GRPC_STREAMING,
    ),
    phase=CONTRACT,
    explain="the body or a parameter is not what the route's schema, API description or gRPC "
    "method allows",
    section="contract",
    # The route's ``contract`` section (a contract rule's ``config`` takes the same keys).
    schema={
        "requestSchemaRef": {"type": "string", "minLength": 1},
        "requestSchema": {"type": ["object", "boolean"]},
        "rejectUnknownFields": {"type": "boolean"},
        "openapiRef": {"type": "string", "minLength": 1},
        "rejectUnknownParameters": {"type": "boolean"},
    },
)
