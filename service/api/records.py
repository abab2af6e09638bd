"""Turning REST Proxy record shapes into ``Record`` values and routing them to partitions.

v3 records carry ``{"type", "data"}`` for key and value (BINARY base64, JSON any value,
STRING text); v2 records carry raw JSON (json format) or base64 (binary format). Routing
follows Kafka's producer: an explicit partition wins, a key goes where murmur2 puts it, and
records with neither spread round-robin.
"""
from __future__ import annotations

import random
from binascii import b2a_base64 as _b2a_base64
from typing import Any, NamedTuple

import orjson

from service.api.http import b64decode, parse_timestamp
from service.controller import TopicMetadata
from service.errors import Errors, KafkaError, RestError, partition_not_found
from service.producer_state import ProducerBatch
from service.partitioner import partition_for_key
from service.types import Record

V3_RECORD_FIELDS = frozenset({"partition_id", "headers", "key", "value", "timestamp",
                              # dlog extensions: idempotent producers
                              "producer_id", "producer_epoch", "sequence", "transactional_id"})
_PRODUCER_FIELDS = ("producer_id", "producer_epoch", "sequence")
INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_SCHEMA_TYPES = ("AVRO", "JSONSCHEMA", "PROTOBUF")
_DATA_FIELDS = frozenset({"type", "data", "subject", "schema_id", "schema_version", "subject_name_strategy", "schema"})


class ParsedRecord(NamedTuple):
    partition_id: int | None
    record: Record
    key_meta: dict | None  # {"type", "size"} for the delivery report, None when absent
    value_meta: dict | None
    producer: tuple[int, int, int] | None = None  # (producer_id, producer_epoch, sequence)
    transactional_id: str | None = None


def parse_producer_fields(obj: dict, sequence_field: str, where: str) -> tuple[int, int, int] | None:
    """``producer_id``, ``producer_epoch`` and a sequence, all three or none; 400 otherwise."""
    pid, epoch, seq = obj.get("producer_id"), obj.get("producer_epoch"), obj.get(sequence_field)
    if pid is None and epoch is None and seq is None:
        return None  # the common case, checked without building lists
    # Exact ints in range (the every-record case of an idempotent producer): no lists either.
    if type(pid) is int and type(epoch) is int and type(seq) is int and 0 <= pid <= INT64_MAX \
            and 0 <= epoch <= INT16_MAX and 0 <= seq <= INT32_MAX:
        return pid, epoch, seq
    fields = ("producer_id", "producer_epoch", sequence_field)
    present = [f for f in fields if obj.get(f) is not None]
    if not present:
        return None
    if len(present) != 3:
        raise RestError(400, f"Bad Request: {where} needs producer_id, producer_epoch and {sequence_field} together.",
                        400)
    values = [obj[f] for f in fields]
    limits = (INT64_MAX, INT16_MAX, INT32_MAX)
    for f, v, limit in zip(fields, values, limits):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
            raise RestError(400, f"Bad Request: {f} must be an integer between 0 and {limit}.", 400)
    return values[0], values[1], values[2]


def _data(field: str, obj: Any) -> tuple[bytes | None, dict | None]:
    if obj is None:
        return None, None
    if not isinstance(obj, dict):
        raise RestError(400, f"Bad Request: {field} must be an object with type and data.", 400)
    if not _DATA_FIELDS.issuperset(obj):
        unknown = set(obj) - _DATA_FIELDS
        raise RestError(400, f"Bad Request: unrecognized field(s) {sorted(unknown)} in {field}.", 400)
    kind = obj.get("type", "BINARY")
    if not isinstance(kind, str):
        raise RestError(400, f"Bad Request: {field}.type must be a string.", 400)
    kind = kind.upper()
    if kind in _SCHEMA_TYPES or "schema_id" in obj or "schema" in obj or "subject" in obj:
        raise RestError(400, f"Bad Request: {field} type {kind} needs a Schema Registry, which dlog does not "
                             "have; use BINARY, JSON or STRING.", 400)
    if kind not in ("BINARY", "JSON", "STRING"):  # checked before a null data is accepted
        raise RestError(400, f"Bad Request: {field} type {kind!r} is not one of BINARY, JSON, STRING.", 400)
    data = obj.get("data")
    if kind == "JSON":
        if "data" not in obj:
            return None, {"type": "JSON", "size": 0}
        raw = orjson.dumps(data)
    elif data is None:
        return None, {"type": kind, "size": 0}
    elif kind == "BINARY":
        raw = b64decode(data, field)
    elif kind == "STRING":
        if not isinstance(data, str):
            raise RestError(400, f"Bad Request: {field} data={orjson.dumps(data).decode()[:40]} is not a string.", 400)
        raw = data.encode("utf-8")
    return raw, {"type": kind, "size": len(raw)}


def headers_blob(headers: Any) -> bytes | None:
    """v3/v2 headers ``[{"name"|"key": str, "value": base64|null}]`` as stored bytes."""
    if headers is None:
        return None
    if not isinstance(headers, list):
        raise RestError(400, "Bad Request: headers must be a list of {\"name\", \"value\"}.", 400)
    stored = []
    for h in headers:
        if not isinstance(h, dict):
            raise RestError(400, "Bad Request: each header must be an object.", 400)
        name = h.get("name", h.get("key"))
        if not isinstance(name, str) or not name:
            raise RestError(400, "Bad Request: a header needs a non-empty string name.", 400)
        value = h.get("value")
        if value is not None:
            b64decode(value, f"header {name}")
        stored.append([name, value])
    return orjson.dumps(stored) if stored else None


def headers_json(blob: bytes | None) -> list[dict] | None:
    if not blob:
        return None
    return [{"name": n, "value": v} for n, v in orjson.loads(blob)]


def parse_v3_record(obj: Any) -> ParsedRecord:
    """One v3 ``ProduceRequest`` object; 400 with the REST Proxy's message when malformed."""
    if not isinstance(obj, dict):
        raise RestError(400, "Bad Request: each record must be a JSON object.", 400)
    if not V3_RECORD_FIELDS.issuperset(obj):
        unknown = sorted(set(obj) - V3_RECORD_FIELDS)
        raise RestError(400, f"Bad Request: Unrecognized field(s) {unknown}; known fields are "
                             f"{sorted(V3_RECORD_FIELDS)}.", 400)
    partition_id = obj.get("partition_id")
    if partition_id is not None and (isinstance(partition_id, bool) or not isinstance(partition_id, int)):
        raise RestError(400, "Bad Request: partition_id must be an integer.", 400)
    # Absent fields skip their (no-op) parser calls: this runs once per record of every produce.
    key = obj.get("key")
    key, key_meta = (None, None) if key is None else _data("key", key)
    value, value_meta = _data("value", obj.get("value"))
    ts = obj.get("timestamp")
    timestamp = None if ts is None else parse_timestamp(ts)
    producer = parse_producer_fields(obj, "sequence", "an idempotent record")
    if producer is not None and partition_id is None:
        raise RestError(400, "Bad Request: an idempotent record must name its partition_id (sequences count "
                             "per producer and partition).", 400)
    transactional_id = None if obj.get("transactional_id") is None else parse_transactional_id(obj, producer)
    headers = obj.get("headers")
    return ParsedRecord(partition_id, Record(timestamp, key, value, None if headers is None else headers_blob(headers)),
                        key_meta, value_meta, producer, transactional_id)


def parse_transactional_id(obj: dict, producer: tuple[int, int, int] | None) -> str | None:
    """The optional ``transactional_id`` of a produce; it needs the producer fields too."""
    transactional_id = obj.get("transactional_id")
    if transactional_id is None:
        return None
    if not isinstance(transactional_id, str) or not transactional_id:
        raise RestError(400, "Bad Request: transactional_id must be a non-empty string.", 400)
    if producer is None:
        raise RestError(400, "Bad Request: a transactional produce needs producer_id, producer_epoch and its "
                             "sequence.", 400)
    return transactional_id


def producer_batch(producers: list[tuple[int, int, int] | None],
                   transactional_ids: list[str | None] | None = None) -> ProducerBatch:
    """The producer fields of one partition's batch, from its records' (pid, epoch, seq) and
    transactional ids.

    :raises INVALID_RECORD: idempotent and plain records mixed, several producers or epochs,
        or sequences that are not consecutive (Kafka takes one batch per partition).
    """
    first = producers[0]
    if first is None:
        if any(p is not None for p in producers):
            raise KafkaError(Errors.INVALID_RECORD, "Idempotent and plain records cannot share a partition's batch.")
        return ProducerBatch()
    expected = first[2]
    for p in producers:
        if p is None or p[0] != first[0] or p[1] != first[1] or p[2] != expected:
            raise KafkaError(Errors.INVALID_RECORD, "The idempotent records of one partition in one request must "
                                                    "come from one producer and epoch with consecutive sequences.")
        expected = expected + 1 if expected < INT32_MAX else 0  # increment_sequence(expected, 1), inlined
    tids = set(transactional_ids or [None])
    if len(tids) != 1:
        raise KafkaError(Errors.INVALID_RECORD, "The records of one partition's batch must all name the same "
                                                "transactional_id, or none.")
    tid = tids.pop()
    return ProducerBatch(first[0], first[1], first[2], tid is not None, tid)


class Router:
    """Chooses the partition of each record of one request (Kafka's producer partitioner)."""

    def __init__(self, topic: TopicMetadata) -> None:
        self.topic = topic
        self._next = random.randrange(topic.partitions_count)

    def partition(self, explicit: int | None, key: bytes | None) -> int:
        count = self.topic.partitions_count
        if explicit is not None:
            if not 0 <= explicit < count:
                raise partition_not_found(self.topic.topic_name, explicit)
            return explicit
        if key is not None:
            return partition_for_key(key, count)
        chosen = self._next
        self._next = (chosen + 1) % count
        return chosen


def stored_record_json(topic: str, partition: int, r, fmt: str) -> dict:
    """A consumed record in the REST Proxy's v2 shape (plus timestamp and headers)."""
    if fmt == "json":
        try:
            key = None if r.key is None else orjson.loads(r.key)
            value = None if r.value is None else orjson.loads(r.value)
        except orjson.JSONDecodeError:
            raise RestError(422, f"The record at offset {r.offset} of {topic}-{partition} is not JSON; "
                                 "read it with Accept: application/vnd.kafka.binary.v2+json.", 42203) from None
    else:
        key = r.key
        value = r.value
        # inline b64encode: this runs once per record of every read
        key = None if key is None else _b2a_base64(key, newline=False).decode("ascii")
        value = None if value is None else _b2a_base64(value, newline=False).decode("ascii")
    headers = r.headers
    return {"topic": topic, "key": key, "value": value, "partition": partition, "offset": r.offset,
            "timestamp": r.timestamp, "headers": headers_json(headers) if headers else None}
