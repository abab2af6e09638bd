"""REST Proxy v2: metadata, produce (json and binary embedded formats) and the stateless read
``GET /topics/{t}/partitions/{p}/records`` (as Redpanda's proxy serves it)."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, request

from service.api.http import (
    JSON,
    MAX_TIMESTAMP_MS,
    V2_EMBEDDED_BINARY,
    V2_EMBEDDED_JSON,
    V2_JSON,
    b64decode,
    json_response,
    query_int,
    read_body,
    require_accept,
    server,
    v2_embedded_format,
)
from service.api.produce import produce_options
from service.api.records import (
    Router,
    headers_blob,
    parse_producer_fields,
    parse_transactional_id,
    stored_record_json,
)
from service.controller import TopicMetadata
from service.errors import DlogError, Errors, KafkaError, RestError, topic_not_found
from service.log import LogAppendInfo
from service.producer_state import ProducerBatch
from service.types import Record

bp = Blueprint("v2", __name__)

_V2_RECORD_FIELDS = frozenset({"key", "value", "partition", "headers", "timestamp"})
_V2_BODY_FIELDS = frozenset({"records", "key_schema", "key_schema_id", "value_schema", "value_schema_id",
                             # dlog extensions: idempotent producers
                             "producer_id", "producer_epoch", "base_sequence", "transactional_id"})


def _v2(data: Any, status: int = 200):
    return json_response(data, status, mimetype=require_accept(V2_JSON, JSON))


def _topic(name: str) -> TopicMetadata:
    topic = server().controller.image().topics.get(name)
    if topic is None:
        raise topic_not_found(name)
    return topic


def _partition_json(topic: TopicMetadata, partition_id: int) -> dict:
    p = topic.partition(partition_id)
    return {"partition": p.partition_id, "leader": p.leader,
            "replicas": [{"broker": b, "leader": b == p.leader, "in_sync": b in p.isr} for b in p.replicas]}


@bp.get("/")
def root():
    """The REST Proxy's no-op root: ``{}``."""
    return _v2({})


@bp.get("/topics")
def list_topics():
    """Topic names."""
    return _v2(sorted(server().controller.image().topics))


@bp.get("/topics/<topic_name>")
def get_topic(topic_name: str):
    """A topic with its configs and partitions."""
    topic = _topic(topic_name)
    configs = {n: v for n, (v, _d) in server().controller.describe_configs(topic_name).items()}
    return _v2({"name": topic.topic_name, "configs": configs,
                "partitions": [_partition_json(topic, p.partition_id) for p in topic.partitions]})


@bp.get("/topics/<topic_name>/partitions")
def list_partitions(topic_name: str):
    """A topic's partitions with leader and replicas."""
    topic = _topic(topic_name)
    return _v2([_partition_json(topic, p.partition_id) for p in topic.partitions])


@bp.get("/topics/<topic_name>/partitions/<int(signed=True):partition_id>")
def get_partition(topic_name: str, partition_id: int):
    """One partition."""
    return _v2(_partition_json(_topic(topic_name), partition_id))


@bp.get("/topics/<topic_name>/partitions/<int(signed=True):partition_id>/offsets")
def get_partition_offsets(topic_name: str, partition_id: int):
    """``{"beginning_offset", "end_offset"}``: the log start offset and the high watermark."""
    topic = _topic(topic_name)
    o = server().replica_manager.offsets(topic, topic.partition(partition_id).partition_id)
    return _v2({"beginning_offset": o.log_start_offset, "end_offset": o.high_watermark})


@bp.get("/brokers")
def list_brokers():
    """Broker ids."""
    return _v2({"brokers": [b.broker_id for b in server().controller.image().brokers]})


def _v2_records(body: Any, fmt: str) -> list[tuple[int | None, Record]]:
    if not isinstance(body, dict):
        raise RestError(422, "Payload error. The body must be a JSON object with records.", 422)
    unknown = set(body) - _V2_BODY_FIELDS
    if unknown:
        raise RestError(422, f"Unrecognized field(s): {', '.join(sorted(unknown))}", 422)
    if any(body.get(k) is not None for k in ("key_schema", "key_schema_id", "value_schema", "value_schema_id")):
        raise RestError(422, "Schemas need a Schema Registry, which dlog does not have.", 42205)
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise RestError(422, "records may not be empty", 422)
    out = []
    for index, r in enumerate(records):
        if not isinstance(r, dict):
            raise RestError(422, f"Record {index} must be a JSON object.", 422)
        if not _V2_RECORD_FIELDS.issuperset(r):
            unknown = set(r) - _V2_RECORD_FIELDS
            raise RestError(422, f"Unrecognized field(s) in record {index}: {', '.join(sorted(unknown))}", 422)
        partition = r.get("partition")
        if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)):
            raise RestError(422, f"Record {index}: partition must be an integer.", 422)
        try:
            if fmt == "binary":
                key = None if r.get("key") is None else b64decode(r["key"], "key")
                value = None if r.get("value") is None else b64decode(r["value"], "value")
            else:
                key = None if r.get("key") is None else orjson.dumps(r["key"])
                value = None if r.get("value") is None else orjson.dumps(r["value"])
            headers = headers_blob(r.get("headers"))
        except RestError as exc:
            raise RestError(422, f"Record {index}: {exc.message}", 42203) from None
        timestamp = r.get("timestamp")
        if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)
                                      or not 0 <= timestamp <= MAX_TIMESTAMP_MS):
            raise RestError(422, f"Record {index}: timestamp must be epoch milliseconds.", 422)
        out.append((partition, Record(timestamp, key, value, headers)))
    return out


def _produce_v2(topic_name: str, path_partition: int | None):
    mimetype = require_accept(V2_JSON, JSON)
    fmt = v2_embedded_format()
    acks, timeout_ms = produce_options()
    data = read_body()
    if not data.strip():
        raise RestError(422, "records may not be empty", 422)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RestError(400, f"Malformed JSON: {exc}", 400) from None
    records = _v2_records(body, fmt)
    producer = parse_producer_fields(body, "base_sequence", "an idempotent produce")
    transactional_id = parse_transactional_id(body, producer)
    s = server()
    topic = s.controller.image().topics.get(topic_name)
    if topic is None:
        if not s.config.auto_create_topics_enable:
            raise topic_not_found(topic_name)
        try:
            s.controller.create_topic(topic_name)
        except KafkaError as exc:
            if exc.error is not Errors.TOPIC_ALREADY_EXISTS:  # a concurrent first produce won the race
                raise
        topic = s.controller.topic(topic_name)
    router = Router(topic)
    routed = [router.partition(path_partition if p is None else p, r.key) for p, r in records]
    batches: dict[int, list[int]] = {}
    for index, partition_id in enumerate(routed):
        batches.setdefault(partition_id, []).append(index)
    producers = {}
    if producer is not None:
        explicit = path_partition is not None or all(p is not None for p, _r in records)
        if not explicit or len(batches) != 1:
            raise RestError(422, "An idempotent produce names one partition (in the path or on every record): "
                                 "sequences count per producer and partition.", 422)
        producers = {routed[0]: ProducerBatch(*producer, transactional_id is not None, transactional_id)}
    results = s.replica_manager.append_records(
        topic, {p: [records[i][1] for i in idx] for p, idx in batches.items()}, acks, timeout_ms, producers)
    offsets: list[dict | None] = [None] * len(records)
    failures: list[DlogError] = []
    for partition_id, indexes in batches.items():
        result = results.get(partition_id)
        for n, index in enumerate(indexes):
            if result is None:
                offsets[index] = {"partition": partition_id, "offset": -1, "error_code": None, "error": None}
            elif isinstance(result, LogAppendInfo):
                offsets[index] = {"partition": partition_id, "offset": result.first_offset + n,
                                  "error_code": None, "error": None}
                if result.duplicate:
                    offsets[index]["duplicate"] = True
            else:
                failures.append(result)
                offsets[index] = {"partition": None, "offset": None,
                                  "error_code": 50003 if result.retriable else 50002,
                                  "error": result.message, "kafka_error": result.error.name}
    if len(failures) == len(records) and len({f.error for f in failures}) == 1:
        raise failures[0]
    return json_response({"offsets": offsets, "key_schema_id": None, "value_schema_id": None}, mimetype=mimetype)


@bp.post("/topics/<topic_name>")
def produce_to_topic(topic_name: str):
    """v2 produce: ``{"records": [{"key", "value", "partition"}]}``; creates the topic if needed."""
    return _produce_v2(topic_name, None)


@bp.post("/topics/<topic_name>/partitions/<int(signed=True):partition_id>")
def produce_to_partition(topic_name: str, partition_id: int):
    """v2 produce to one partition."""
    return _produce_v2(topic_name, partition_id)


@bp.get("/topics/<topic_name>/partitions/<int(signed=True):partition_id>/records")
def read_records(topic_name: str, partition_id: int):
    """Stateless read from ``?offset=`` (default 0), up to ``?max_bytes=``, waiting up to
    ``?timeout=`` ms for data. The Accept header picks json or binary (default binary)."""
    chosen = require_accept(V2_EMBEDDED_BINARY, V2_EMBEDDED_JSON, JSON, V2_JSON)
    fmt = "json" if chosen == V2_EMBEDDED_JSON else "binary"
    offset = query_int("offset", 0, 0)
    max_bytes = query_int("max_bytes", 1024 * 1024, 1, 64 * 1024 * 1024)
    timeout_ms = query_int("timeout", 0, 0, 300_000)
    isolation = request.args.get("isolation_level", "read_uncommitted")
    if isolation not in ("read_uncommitted", "read_committed"):
        raise RestError(400, "isolation_level must be read_uncommitted or read_committed.", 400)
    topic = _topic(topic_name)
    topic.partition(partition_id)
    fetch = server().replica_manager.fetch_wait(topic, partition_id, offset, max_bytes, timeout_ms, isolation)
    body = [stored_record_json(topic_name, partition_id, r, fmt) for r in fetch.records if not r.is_control]
    # Where to read next: past the last record returned, transaction markers included (they
    # take offsets but are never returned), so a client never re-reads a marker forever.
    next_offset = fetch.records[-1].offset + 1 if fetch.records else offset
    return json_response(body, mimetype=chosen if chosen != JSON else V2_EMBEDDED_BINARY,
                         headers={"X-Dlog-Next-Offset": str(next_offset),
                                  "X-Dlog-High-Watermark": str(fetch.high_watermark)})
