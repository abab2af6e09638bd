"""v3 produce: ``POST .../topics/{t}/records`` (concatenated JSON, chunked streaming) and
``POST .../topics/{t}/records:batch`` (207), with dlog's ``?acks=`` and ``?timeout_ms=``.

A body sent whole is validated whole before anything is appended: one malformed record
rejects the request with a 4xx and writes nothing. Records then go to their partitions in one
batch (one transaction) per partition. A chunked body is streamed: each complete record read
gets its own delivery report, in order, as the REST Proxy streams them.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import orjson
from flask import Blueprint, Response, request, stream_with_context

from service.api.admin import _cluster
from service.api.errors import error_body
from service.api.http import JSON, check_content_type, iso_timestamp, json_response, query_int, read_body, server
from service.api.records import ParsedRecord, Router, parse_v3_record, producer_batch
from service.controller import TopicMetadata
from service.errors import BATCH_ERROR, PAYLOAD_ERROR, DlogError, RestError
from service.log import LogAppendInfo
from service.types import Acks

bp = Blueprint("produce", __name__, url_prefix="/v3")

_decoder = json.JSONDecoder()
_WS = " \t\n\r"
_STREAM_CHUNK = 64 * 1024


def produce_options() -> tuple[Acks, int]:
    """``?acks=`` (0, 1, all, -1; default from configuration) and ``?timeout_ms=``."""
    s = server()
    acks = Acks.parse(request.args.get("acks", s.config.acks))
    timeout_ms = query_int("timeout_ms", s.config.request_timeout_ms, 0, 3_600_000)
    return acks, timeout_ms


def split_concatenated(text: str, start: int = 0) -> tuple[list[Any], int]:
    """Parse concatenated JSON values from ``text``; return them and where parsing stopped
    (the start of an incomplete trailing value, or the end)."""
    values = []
    pos = start
    n = len(text)
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            return values, pos
        try:
            value, pos = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            # Incomplete (more may arrive): the parser ran off the end, or into an open string.
            if exc.pos >= n or exc.msg.startswith("Unterminated string"):
                return values, pos
            raise
        except RecursionError:
            # The stdlib parser recurses per nesting level; orjson stops at 1024 levels likewise.
            raise json.JSONDecodeError("JSON nested too deeply", text, pos) from None
        values.append(value)


def _parse_body_records(data: bytes) -> list[Any]:
    try:
        single = orjson.loads(data)
        return [single]
    except orjson.JSONDecodeError:
        pass
    # The common shape: one record per line. If every non-blank line is a whole JSON value,
    # that is exactly the concatenated parse (lines are separated by whitespace), and orjson
    # reads it at twice the speed of the general parser below.
    try:
        return [orjson.loads(line) for line in data.split(b"\n") if line.strip()]
    except orjson.JSONDecodeError:
        pass  # a record spans lines, or a line holds several: the general parser decides
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RestError(400, "Malformed body: not UTF-8 JSON.", 400) from None
    try:
        values, pos = split_concatenated(text)
    except json.JSONDecodeError as exc:
        raise RestError(400, f"Malformed JSON in the request body: {exc}", 400) from None
    if pos < len(text):
        raise RestError(400, "Malformed JSON in the request body: it ends inside a record.", 400)
    return values


def _report(cid: str, topic: TopicMetadata, partition_id: int, offset: int, timestamp_ms: int,
            parsed: ParsedRecord) -> dict:
    report = {"error_code": 200, "cluster_id": cid, "topic_name": topic.topic_name, "partition_id": partition_id,
              "offset": offset, "timestamp": iso_timestamp(timestamp_ms)}
    if parsed.key_meta is not None:
        report["key"] = parsed.key_meta
    if parsed.value_meta is not None:
        report["value"] = parsed.value_meta
    return report


def produce_parsed(cid: str, topic: TopicMetadata, parsed: list[ParsedRecord], router: Router, acks: Acks,
                   timeout_ms: int) -> list[dict | DlogError]:
    """Route, append (one batch per partition) and give one report per record, in order:
    the delivery report, or the error its partition met."""
    partitions = [router.partition(p.partition_id, p.record.key) for p in parsed]
    batches: dict[int, list[int]] = {}
    for index, partition_id in enumerate(partitions):
        batches.setdefault(partition_id, []).append(index)
    producers, invalid = {}, {}
    for partition_id, idx in batches.items():
        try:
            producers[partition_id] = producer_batch([parsed[i].producer for i in idx],
                                                     [parsed[i].transactional_id for i in idx])
        except DlogError as exc:
            invalid[partition_id] = exc
    results: dict = server().replica_manager.append_records(
        topic, {p: [parsed[i].record for i in idx] for p, idx in batches.items() if p not in invalid}, acks,
        timeout_ms, producers) if len(invalid) < len(batches) else {}
    results.update(invalid)
    now = server().clock.milliseconds()
    reports: list[dict | DlogError | None] = [None] * len(parsed)
    for partition_id, indexes in batches.items():
        result = results.get(partition_id)
        for n, index in enumerate(indexes):
            p = parsed[index]
            if result is None:  # acks=0: not known yet
                reports[index] = _report(cid, topic, partition_id, -1, p.record.timestamp or now, p)
            elif isinstance(result, LogAppendInfo):
                reports[index] = _report(cid, topic, partition_id, result.first_offset + n, result.timestamps[n], p)
                if result.duplicate:
                    reports[index]["duplicate"] = True
            else:
                reports[index] = result
    return reports  # type: ignore[return-value]


def _uniform_failure(reports: list[dict | DlogError]) -> DlogError | None:
    """The error every record failed with, if they all failed alike: answered as an HTTP
    status, so a failed single-record produce is a 503/504/413, not a 200."""
    first = reports[0] if reports else None
    if isinstance(first, DlogError) and all(
            isinstance(r, DlogError) and r.error_code == first.error_code for r in reports):
        return first
    return None


def _report_bytes(report: dict | DlogError) -> bytes:
    return orjson.dumps(error_body(report) if isinstance(report, DlogError) else report) + b"\r\n"


@bp.post("/clusters/<cid>/topics/<topic_name>/records")
def produce_records(cid: str, topic_name: str):
    """Produce records: one JSON object per record, concatenated; chunked bodies are streamed.

    Query: ``acks`` (0, 1, all), ``timeout_ms``. One delivery report per record, in order.
    """
    _cluster(cid)
    check_content_type((JSON,))
    acks, timeout_ms = produce_options()
    topic = server().controller.topic(topic_name)
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked" and request.content_length is None:
        return Response(stream_with_context(_stream(cid, topic, acks, timeout_ms)), mimetype=JSON)
    data = read_body()
    if not data.strip():
        raise RestError(422, "Payload error. Request body is empty. Data is required.", PAYLOAD_ERROR)
    values = _parse_body_records(data)
    parsed = []
    for index, value in enumerate(values):
        try:
            parsed.append(parse_v3_record(value))
        except RestError as exc:
            if len(values) > 1:
                exc.message = f"Record {index}: {exc.message} Nothing was written."
            raise
    router = Router(topic)
    reports = produce_parsed(cid, topic, parsed, router, acks, timeout_ms)
    failure = _uniform_failure(reports)
    if failure is not None:
        raise failure
    return Response(b"".join(_report_bytes(r) for r in reports), mimetype=JSON)


def _stream(cid: str, topic: TopicMetadata, acks: Acks, timeout_ms: int) -> Iterator[bytes]:
    """Read the chunked body as it arrives; answer each record as soon as it is appended."""
    router = Router(topic)
    buffer = ""
    pending = b""
    stream = request.stream
    while True:
        chunk = stream.read1(_STREAM_CHUNK) if hasattr(stream, "read1") else stream.read(_STREAM_CHUNK)
        if not chunk:
            break
        pending += chunk
        try:
            text = pending.decode("utf-8")
            pending = b""
        except UnicodeDecodeError:
            continue  # a multi-byte character split across chunks
        buffer += text
        try:
            values, pos = split_concatenated(buffer)
        except json.JSONDecodeError as exc:
            yield orjson.dumps({"error_code": 400, "message": f"Malformed JSON in the stream: {exc}"}) + b"\r\n"
            return
        buffer = buffer[pos:]
        yield from _produce_values(cid, topic, values, router, acks, timeout_ms)
    if buffer.strip():
        yield orjson.dumps({"error_code": 400, "message": "Malformed JSON: the stream ended inside a record."}) + b"\r\n"


def _produce_values(cid, topic, values, router, acks, timeout_ms) -> Iterator[bytes]:
    """Reports for the records of one chunk; a malformed or misrouted record fails alone."""
    parsed_ok: list[ParsedRecord] = []
    slots: list[DlogError | None] = []
    for value in values:
        try:
            parsed = parse_v3_record(value)
            if parsed.partition_id is not None:
                topic.partition(parsed.partition_id)
            parsed_ok.append(parsed)
            slots.append(None)
        except DlogError as exc:
            slots.append(exc)
    reports = iter(produce_parsed(cid, topic, parsed_ok, router, acks, timeout_ms) if parsed_ok else ())
    for slot in slots:
        yield _report_bytes(slot if slot is not None else next(reports))


@bp.post("/clusters/<cid>/topics/<topic_name>/records:batch")
def produce_batch(cid: str, topic_name: str):
    """Produce a batch: ``{"entries": [{"id", ...record}]}``; 207 with successes and failures."""
    _cluster(cid)
    check_content_type((JSON,))
    acks, timeout_ms = produce_options()
    topic = server().controller.topic(topic_name)
    data = read_body()
    if not data.strip():
        raise RestError(422, "Payload error. Request body is empty. Data is required.", PAYLOAD_ERROR)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RestError(400, f"Malformed JSON: {exc}", 400) from None
    if not isinstance(body, dict) or set(body) != {"entries"} or not isinstance(body["entries"], list):
        raise RestError(422, "Payload error. The body must be {\"entries\": [...]}.", PAYLOAD_ERROR)
    entries = body["entries"]
    limit = server().config.produce_batch_max_entries
    if not entries:
        raise RestError(422, "Empty batch.", BATCH_ERROR)
    if len(entries) > limit:
        raise RestError(422, f"Too many entries in batch: {len(entries)} > {limit}.", BATCH_ERROR)
    ids = []
    for e in entries:
        entry_id = e.get("id") if isinstance(e, dict) else None
        if not isinstance(entry_id, str) or not 1 <= len(entry_id) <= 80:
            raise RestError(422, "Each batch entry needs an id of 1 to 80 characters.", BATCH_ERROR)
        ids.append(entry_id)
    if len(set(ids)) != len(ids):
        raise RestError(422, "Batch entry IDs are not distinct.", BATCH_ERROR)
    failures, parsed, parsed_ids = [], [], []
    for entry_id, e in zip(ids, entries):
        try:
            p = parse_v3_record({k: v for k, v in e.items() if k != "id"})
            if p.partition_id is not None:
                topic.partition(p.partition_id)
        except DlogError as exc:
            failures.append({"id": entry_id, **error_body(exc)})
            continue
        parsed.append(p)
        parsed_ids.append(entry_id)
    successes = []
    if parsed:
        reports = produce_parsed(cid, topic, parsed, Router(topic), acks, timeout_ms)
        for entry_id, report in zip(parsed_ids, reports):
            if isinstance(report, DlogError):
                failures.append({"id": entry_id, **error_body(report)})
            else:
                successes.append({"id": entry_id, **report})
    return json_response({"successes": successes, "failures": failures}, 207)
