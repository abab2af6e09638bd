"""REST Proxy v2 consumer instances: the thirteen operations under ``/consumers/{group}``.

Paths, content types, status codes and bodies follow Confluent's kafka-rest v2; instances live
in controller.db, so any worker serves any call. dlog additions: ``isolation.level`` at
creation, ``timestamp`` and ``headers`` on records, ``generation_id`` and ``member_id`` in
``GET .../assignments`` (for transactional offset commits).
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, request

from service.api.http import (
    JSON,
    V2_EMBEDDED_BINARY,
    V2_EMBEDDED_JSON,
    V2_JSON,
    base_url,
    body_json,
    json_response,
    query_int,
    server,
)
from service.api.records import stored_record_json
from service.errors import RestError, partition_not_found, topic_not_found

bp = Blueprint("consumers", __name__)

_CONTROL_TYPES = (V2_JSON, JSON, "application/vnd.kafka+json", "application/octet-stream")
_NAME = re.compile(r"[A-Za-z0-9._\-]{1,255}")
INVALID_CONSUMER_CONFIG = 42204
_CREATE_FIELDS = {"name", "id", "format", "auto.offset.reset", "auto.commit.enable", "auto.commit.interval.ms",
                  "fetch.min.bytes", "consumer.request.timeout.ms", "isolation.level", "client.id"}


def _ok(data: Any = None, status: int = 200):
    if status == 204:
        return "", 204
    return json_response(data, status, mimetype=V2_JSON)


def _name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise RestError(422, f"Invalid {what} {value!r}: use 1 to 255 letters, digits, '.', '_' or '-'.", 422)
    return value


def _body(required: bool = True) -> dict:
    body = body_json(required=required, allowed_types=_CONTROL_TYPES, empty_ok=not required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise RestError(422, "Payload error. The body must be a JSON object.", 422)
    return body


def _config_value(body: dict, key: str, default: Any, parse) -> Any:
    if key not in body or body[key] is None:
        return default
    try:
        return parse(body[key])
    except (ValueError, TypeError) as exc:
        raise RestError(422, f"Invalid consumer configuration: {key}={body[key]!r}: {exc}",
                        INVALID_CONSUMER_CONFIG) from None


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError("must be true or false")


def _int_range(lo: int, hi: int):
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("must be an integer")
        n = int(v)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return n
    return parse


def _choice(*choices: str):
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v.lower()
    return parse


def _partitions(body: dict, key: str = "partitions", with_offset: bool = False) -> list[tuple]:
    items = body.get(key)
    if not isinstance(items, list):
        raise RestError(422, f"Payload error. {key} must be a list.", 422)
    topics = server().controller.image().topics
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
            raise RestError(422, f"Payload error. Each entry of {key} needs a topic and a partition.", 422)
        p = item.get("partition")
        if isinstance(p, bool) or not isinstance(p, int):
            raise RestError(422, "Payload error. partition must be an integer.", 422)
        topic = topics.get(item["topic"])
        if topic is None:
            raise topic_not_found(item["topic"])
        if not 0 <= p < topic.partitions_count:
            raise partition_not_found(item["topic"], p)
        if with_offset:
            o = item.get("offset")
            if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < 2**63 - 1:
                raise RestError(422, "Payload error. offset must be a non-negative integer.", 422)
            metadata = item.get("metadata")
            if metadata is not None and not isinstance(metadata, str):
                raise RestError(422, "Payload error. metadata must be a string.", 422)
            out.append((item["topic"], p, o, metadata))
        else:
            out.append((item["topic"], p))
    return out


# ---------------------------------------------------------------------------- 1, 2: instances
@bp.post("/consumers/<group>")
def create_consumer(group: str):
    """Create a consumer instance in a group: ``{"name", "format", "auto.offset.reset",
    "auto.commit.enable", "fetch.min.bytes", "consumer.request.timeout.ms", "isolation.level"}``."""
    _name(group, "consumer group")
    body = _body(required=False)
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise RestError(422, f"Unrecognized field: {sorted(unknown)[0]}", 422)
    name = body.get("name") or body.get("id")
    if name is not None and not isinstance(name, str):
        raise RestError(422, "Invalid consumer instance name.", 422)
    if name:
        _name(name, "consumer instance name")
    fmt = body.get("format", "binary")
    if not isinstance(fmt, str) or fmt.lower() not in ("binary", "json"):
        raise RestError(422, "Invalid format type: dlog serves binary and json (avro, jsonschema and protobuf "
                             "need a Schema Registry).", INVALID_CONSUMER_CONFIG)
    config = server().config
    settings = {
        "format": fmt.lower(),
        "auto_offset_reset": _config_value(body, "auto.offset.reset", "latest", _choice("earliest", "latest", "none")),
        "auto_commit_enable": _config_value(body, "auto.commit.enable", True, _bool),
        "auto_commit_interval_ms": _config_value(body, "auto.commit.interval.ms", 5000, _int_range(0, 86400000)),
        "fetch_min_bytes": _config_value(body, "fetch.min.bytes", 1, _int_range(-1, 64 * 1024 * 1024)),
        "request_timeout_ms": _config_value(body, "consumer.request.timeout.ms", config.consumer_request_timeout_ms,
                                            _int_range(0, 300000)),
        "isolation_level": _config_value(body, "isolation.level", "read_uncommitted",
                                         _choice("read_uncommitted", "read_committed")),
        "client_id": _config_value(body, "client.id", None, lambda v: _name(str(v), "client.id")),
    }
    member = server().group_coordinator.create_instance(group, name, settings)
    return _ok({"instance_id": member.instance_id,
                "base_uri": f"{base_url()}/consumers/{group}/instances/{member.instance_id}"})


@bp.delete("/consumers/<group>/instances/<instance>")
def delete_consumer(group: str, instance: str):
    """Delete (close) an instance: it leaves the group, committing first if it auto-commits. 204."""
    server().group_coordinator.delete_instance(group, instance)
    return _ok(status=204)


# ---------------------------------------------------------------------------- 3-5: subscription
@bp.post("/consumers/<group>/instances/<instance>/subscription")
def subscribe(group: str, instance: str):
    """Subscribe: ``{"topics": [...]}`` or ``{"topic_pattern": "regex"}``; the group rebalances. 204."""
    body = _body()
    topics, pattern = body.get("topics"), body.get("topic_pattern")
    if (topics is None) == (pattern is None):
        raise RestError(409, "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive.",
                        40903)
    if topics is not None:
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise RestError(422, "Payload error. topics must be a non-empty list of topic names.", 422)
    else:
        if not isinstance(pattern, str) or not pattern or len(pattern) > 1024:
            raise RestError(422, "Payload error. topic_pattern must be a regular expression.", 422)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RestError(422, f"Payload error. topic_pattern is not a valid regular expression: {exc}", 422) from None
    server().group_coordinator.subscribe(group, instance, topics, pattern)
    return _ok(status=204)


@bp.get("/consumers/<group>/instances/<instance>/subscription")
def get_subscription(group: str, instance: str):
    """The instance's subscribed topics."""
    topics, pattern = server().group_coordinator.subscription(group, instance)
    body: dict = {"topics": topics}
    if pattern is not None:
        body["topic_pattern"] = pattern
    return _ok(body)


@bp.delete("/consumers/<group>/instances/<instance>/subscription")
def unsubscribe(group: str, instance: str):
    """Unsubscribe: the instance leaves the group's assignment. 204."""
    server().group_coordinator.unsubscribe(group, instance)
    return _ok(status=204)


# ---------------------------------------------------------------------------- 6, 7: assignments
@bp.post("/consumers/<group>/instances/<instance>/assignments")
def assign(group: str, instance: str):
    """Assign partitions by hand: ``{"partitions": [{"topic", "partition"}]}``. 204."""
    server().group_coordinator.assign(group, instance, _partitions(_body()))
    return _ok(status=204)


@bp.get("/consumers/<group>/instances/<instance>/assignments")
def get_assignments(group: str, instance: str):
    """The partitions the instance owns now, with the group generation and its member id."""
    member, parts, generation = server().group_coordinator.assignment(group, instance)
    return _ok({"partitions": [{"topic": t, "partition": p} for t, p in parts],
                "generation_id": generation, "member_id": member.member_id})


# ---------------------------------------------------------------------------- 8-10: positions
@bp.post("/consumers/<group>/instances/<instance>/positions")
def seek(group: str, instance: str):
    """Seek assigned partitions: ``{"offsets": [{"topic", "partition", "offset"}]}``, or to the
    first records at or after ``{"timestamps": [{"topic", "partition", "timestamp"}]}``. 204."""
    body = _body()
    if "timestamps" in body and "offsets" not in body:
        server().seek_to_timestamps(group, instance, _timestamps(body))
    else:
        server().group_coordinator.seek(group, instance, [(t, p, o) for t, p, o, _m in
                                                          _partitions(body, "offsets", with_offset=True)])
    return _ok(status=204)


def _timestamps(body: dict) -> list[tuple[str, int, int]]:
    from service.api.http import parse_timestamp

    items = body.get("timestamps")
    if not isinstance(items, list):
        raise RestError(422, "Payload error. timestamps must be a list.", 422)
    parts = _partitions({"partitions": [{"topic": i.get("topic"), "partition": i.get("partition")}
                                        for i in items if isinstance(i, dict)]})
    if len(parts) != len(items):
        raise RestError(422, "Payload error. Each timestamp needs a topic and a partition.", 422)
    return [(t, p, parse_timestamp(i.get("timestamp"))) for (t, p), i in zip(parts, items)]


@bp.post("/consumers/<group>/instances/<instance>/positions/beginning")
def seek_to_beginning(group: str, instance: str):
    """Seek partitions to their log start offset. 204."""
    server().seek_to_edge(group, instance, _partitions(_body()), beginning=True)
    return _ok(status=204)


@bp.post("/consumers/<group>/instances/<instance>/positions/end")
def seek_to_end(group: str, instance: str):
    """Seek partitions to their end (high watermark, or last stable offset for read_committed). 204."""
    server().seek_to_edge(group, instance, _partitions(_body()), beginning=False)
    return _ok(status=204)


# ---------------------------------------------------------------------------- 11: records
@bp.get("/consumers/<group>/instances/<instance>/records")
def records(group: str, instance: str):
    """Poll: records from the instance's partitions, waiting up to ``?timeout=`` ms for the
    first (long poll), at most ``?max_bytes=``. The Accept header must match the format."""
    s = server()
    member = s.group_coordinator.member(group, instance)
    wanted = V2_EMBEDDED_JSON if member.format == "json" else V2_EMBEDDED_BINARY
    accept = request.headers.get("Accept")
    if accept and not request.accept_mimetypes.best_match((wanted, JSON, V2_JSON)):
        raise RestError(406, "The requested embedded data format does not match the deserializer for this "
                             "consumer instance", 40601)
    timeout = query_int("timeout", None, 0, 300000)
    max_bytes = query_int("max_bytes", s.config.consumer_request_max_bytes, 1, s.config.consumer_request_max_bytes)
    _member, polled = s.consumer_fetcher.poll(group, instance, timeout, max_bytes)
    return json_response([stored_record_json(r.topic, r.partition, r.record, member.format) for r in polled],
                         mimetype=wanted)


# ---------------------------------------------------------------------------- 12, 13: offsets
@bp.post("/consumers/<group>/instances/<instance>/offsets")
def commit_offsets(group: str, instance: str):
    """Commit offsets. ``{"offsets": [{"topic", "partition", "offset"}]}`` commits offset + 1 (the
    REST Proxy's convention: send the last offset consumed); ``{"partitions": [...]}`` commits the
    offset as sent (the next to read); no body commits every current position."""
    body = _body(required=False)
    if not body:
        offsets = None
    elif "offsets" in body:
        offsets = [(t, p, o + 1, m) for t, p, o, m in _partitions(body, "offsets", with_offset=True)]
    elif "partitions" in body:
        offsets = _partitions(body, "partitions", with_offset=True)
    else:
        raise RestError(422, "Payload error. The body must hold offsets or partitions.", 422)
    server().group_coordinator.commit_offsets(group, instance, offsets)
    return _ok([])


@bp.get("/consumers/<group>/instances/<instance>/offsets")
def committed_offsets(group: str, instance: str):
    """Committed offsets (next to read; -1 when none) of ``{"partitions": [...]}``, sent as a GET
    body as the REST Proxy expects. read_committed instances get UNSTABLE_OFFSET_COMMIT while a
    transaction holds offsets of these partitions."""
    s = server()
    member = s.group_coordinator.member(group, instance)
    parts = _partitions(_body())
    committed = s.offset_manager.fetch_offsets(group, parts,
                                               require_stable=member.isolation_level == "read_committed")
    return _ok({"offsets": [{"topic": t, "partition": p,
                             "offset": committed[(t, p)].offset if (t, p) in committed else -1,
                             "metadata": (committed[(t, p)].metadata or "") if (t, p) in committed else ""}
                            for t, p in parts]})
