"""The OpenAPI 3 document, generated from the Flask routes and their docstrings with apispec.

Every registered rule becomes a path; its converters become path parameters, the first
paragraph of the view's docstring its summary and description. Request bodies and error
responses are described once here per endpoint family.
"""
from __future__ import annotations

import re

from apispec import APISpec
from flask import Flask

_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>[a-z_]+)>")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"},
                   "kafka_error": {"type": "string"}},
}

_ERRORS = {str(code): {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
           for code, text in ((400, "Bad request"), (404, "Not found"), (406, "Not acceptable"),
                              (409, "Conflict"), (413, "Too large"), (415, "Unsupported media type"),
                              (416, "Offset out of range"), (422, "Unprocessable"), (503, "Retriable"),
                              (504, "Timed out: outcome unknown"))}
# Answered by gunicorn before the app sees the request (its request-line limit), in HTML.
_ERRORS["414"] = {"description": "URI too long: the HTTP server's request-line limit"}

_V3_RECORD = {
    "type": "object",
    "properties": {
        "partition_id": {"type": "integer", "nullable": True},
        "headers": {"type": "array", "nullable": True, "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string", "nullable": True, "format": "byte"}}}},
        "key": {"$ref": "#/components/schemas/RecordData"},
        "value": {"$ref": "#/components/schemas/RecordData"},
        "timestamp": {"nullable": True, "oneOf": [{"type": "string", "format": "date-time"},
                                                  {"type": "integer", "minimum": 0}]},
    },
    "additionalProperties": False,
}

_BODIES = {
    ("post", "/v3/clusters/{cid}/topics"): {"type": "object", "required": ["topic_name"], "additionalProperties": False,
                                            "properties": {
        "topic_name": {"type": "string"}, "partitions_count": {"type": "integer"},
        "replication_factor": {"type": "integer"}, "validate_only": {"type": "boolean"},
        "replicas_assignments": {"type": "object"},
        "configs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string", "nullable": True}}}}}},
    ("patch", "/v3/clusters/{cid}/topics/{topic}"): {"type": "object", "properties": {
        "partitions_count": {"type": "integer"}}},
    ("put", "/v3/clusters/{cid}/topics/{topic}/configs/{name}"): {"type": "object", "required": ["value"],
                                                                 "properties": {"value": {"type": "string"}}},
    ("post", "/v3/clusters/{cid}/topics/{topic}/configs:alter"): {"type": "object", "properties": {
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string"},
            "operation": {"type": "string", "enum": ["SET", "DELETE"]}}}},
        "validate_only": {"type": "boolean"}}},
    ("post", "/v3/clusters/{cid}/topics/{topic_name}/records"): {"$ref": "#/components/schemas/ProduceRecord"},
    ("post", "/v3/clusters/{cid}/topics/{topic_name}/records:batch"): {"type": "object", "properties": {
        "entries": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/ProduceRecord"}, {
            "type": "object", "properties": {"id": {"type": "string"}}}]}}}},
    ("post", "/topics/{topic_name}"): {"$ref": "#/components/schemas/V2ProduceRequest"},
    ("post", "/topics/{topic_name}/partitions/{partition_id}"): {"$ref": "#/components/schemas/V2ProduceRequest"},
}

# Query parameters per (method, path): a produce's acks do not belong to the GET of the same path.
_QUERY = {
    ("post", "/v3/clusters/{cid}/topics/{topic_name}/records"): ("acks", "timeout_ms"),
    ("post", "/v3/clusters/{cid}/topics/{topic_name}/records:batch"): ("acks", "timeout_ms"),
    ("post", "/topics/{topic_name}"): ("acks", "timeout_ms"),
    ("post", "/topics/{topic_name}/partitions/{partition_id}"): ("acks", "timeout_ms"),
    ("get", "/topics/{topic_name}/partitions/{partition_id}/records"): ("offset", "max_bytes", "timeout",
                                                                        "isolation_level"),
    ("get", "/v3/clusters/{cid}/topics/{topic}/partitions/{partition_id}/offset"): ("offset_type",),
}
_QUERY_SCHEMAS = {
    "acks": {"type": "string", "enum": ["0", "1", "all", "-1"]},
    "timeout_ms": {"type": "integer", "minimum": 0},
    "offset": {"type": "integer", "minimum": 0},
    "max_bytes": {"type": "integer", "minimum": 1},
    "timeout": {"type": "integer", "minimum": 0},
    "isolation_level": {"type": "string", "enum": ["read_uncommitted", "read_committed"]},
    "offset_type": {"type": "string", "enum": ["earliest_and_latest"]},
}


def build_spec(app: Flask) -> dict:
    spec = APISpec(title="dlog", version="0.1.0", openapi_version="3.0.3",
                   info={"description": "A durable log with Kafka's delivery semantics over the "
                                        "Confluent REST Proxy v2/v3 API, plus dlog's extensions."})
    spec.components.schema("Error", ERROR_SCHEMA)
    spec.components.schema("RecordData", {"type": "object", "nullable": True, "properties": {
        "type": {"type": "string", "enum": ["BINARY", "JSON", "STRING"]}, "data": {}}})
    spec.components.schema("ProduceRecord", _V3_RECORD)
    spec.components.schema("V2ProduceRequest", {"type": "object", "required": ["records"], "properties": {
        "records": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
            "key": {}, "value": {}, "partition": {"type": "integer", "nullable": True},
            "headers": {"type": "array", "nullable": True}, "timestamp": {"type": "integer", "nullable": True}},
            "additionalProperties": False}},
        "key_schema": {}, "key_schema_id": {}, "value_schema": {}, "value_schema_id": {},
        "producer_id": {"type": "integer", "nullable": True},
        "producer_epoch": {"type": "integer", "nullable": True},
        "base_sequence": {"type": "integer", "nullable": True},
        "transactional_id": {"type": "string", "nullable": True}},
        "additionalProperties": False})
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _CONVERTER.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        path_params = [{"name": m.group("name"), "in": "path", "required": True,
                        "schema": {"type": "integer"} if m.group("conv") == "int" else {"type": "string"}}
                       for m in _CONVERTER.finditer(rule.rule)]
        view = app.view_functions[rule.endpoint]
        doc = (view.__doc__ or rule.endpoint).strip()
        summary, _, description = doc.partition("\n\n")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            # An empty integer in the query means "not given" (service.api.http.query_int).
            params = path_params + [{"name": q, "in": "query", "required": False, "schema": _QUERY_SCHEMAS[q],
                                     **({"allowEmptyValue": True} if _QUERY_SCHEMAS[q]["type"] == "integer" else {})}
                                    for q in _QUERY.get((method.lower(), path), ())]
            op: dict = {"operationId": f"{rule.endpoint}.{method.lower()}", "summary": " ".join(summary.split()),
                        "parameters": params, "responses": {"2XX": {"description": "Success"}, **_ERRORS}}
            if description:
                op["description"] = " ".join(description.split())
            body = _BODIES.get((method.lower(), path))
            if body is not None:
                op["requestBody"] = {"content": {"application/json": {"schema": body}}}
            paths.setdefault(path, {})[method.lower()] = op
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()
