"""Request parsing and response building shared by the blueprints; no domain logic here."""
from __future__ import annotations

import base64
import binascii
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson
from flask import Response, current_app, request

from service.errors import PAYLOAD_ERROR, RestError
from service.server import DlogServer

V2_JSON = "application/vnd.kafka.v2+json"
V2_EMBEDDED_JSON = "application/vnd.kafka.json.v2+json"
V2_EMBEDDED_BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/json"

# application/vnd.kafka[.format][.v1|.v2]+json, application/json, application/octet-stream
_V2_CONTENT_TYPE = re.compile(r"application/vnd\.kafka(?:\.(?P<format>[a-z]+))?(?:\.(?P<version>v[12]))?\+json")


def server() -> DlogServer:
    return current_app.extensions["dlog"]


def json_response(data: Any, status: int = 200, mimetype: str = JSON, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status, mimetype=mimetype, headers=headers)


def base_url() -> str:
    return request.host_url.rstrip("/")


def body_json(required: bool = True, allowed_types: Iterable[str] = (JSON,), empty_ok: bool = False) -> Any:
    """The request body parsed as one JSON value, checked against the allowed content types.

    :raises RestError: 415 wrong content type, 413 body too large, 422 empty or bad JSON.
    """
    check_content_type(allowed_types)
    data = read_body()
    if not data.strip():
        if empty_ok or not required:
            return None
        raise RestError(422, "Payload error. Request body is empty. Data is required.", PAYLOAD_ERROR)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RestError(400, f"Malformed JSON: {exc}", 400) from None


def read_body() -> bytes:
    limit = server().config.max_request_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise RestError(413, f"The request body is larger than the maximum of {limit} bytes.", 413)
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise RestError(413, f"The request body is larger than the maximum of {limit} bytes.", 413)
    return data


def mimetype() -> str:
    return (request.mimetype or "").lower()


def check_content_type(allowed: Iterable[str]) -> None:
    mt = mimetype()
    if mt == "" and request.content_length in (None, 0) and not request.headers.get("Transfer-Encoding"):
        return
    allowed = tuple(allowed)
    if mt in allowed or (mt == "" and JSON in allowed):
        return
    raise RestError(415, f"HTTP 415 Unsupported Media Type: {mt or 'none'} (expected {', '.join(allowed)})", 415)


def v2_embedded_format(default: str = "binary") -> str:
    """The embedded format a v2 produce body declares: ``json`` or ``binary``.

    Follows the REST Proxy: ``application/vnd.kafka.json.v2+json`` is json; a content type
    without a format (``application/vnd.kafka.v2+json``, ``application/json``,
    ``application/octet-stream``) is binary; none at all is json (as Karapace does).
    """
    mt = mimetype()
    if mt == "":
        return "json"
    if mt in (JSON, "application/octet-stream"):
        return default
    match = _V2_CONTENT_TYPE.fullmatch(mt)
    if not match:
        raise RestError(415, f"HTTP 415 Unsupported Media Type: {mt}", 415)
    fmt = match.group("format") or default
    if fmt not in ("json", "binary"):
        raise RestError(415, f"HTTP 415 Unsupported Media Type: embedded format {fmt!r} needs a Schema Registry, "
                             "which dlog does not have; use json or binary.", 415)
    return fmt


def accepts(*offered: str) -> str | None:
    """The first of ``offered`` the Accept header allows (missing Accept allows all)."""
    accept = request.headers.get("Accept")
    if not accept:
        return offered[0]
    if accept in offered:
        # A single media type naming one offered exactly: what best_match would choose, without
        # parsing the header into a MIMEAccept (about 25 us).
        return accept
    best = request.accept_mimetypes.best_match(offered)
    return best


def require_accept(*offered: str) -> str:
    chosen = accepts(*offered)
    if chosen is None:
        raise RestError(406, f"HTTP 406 Not Acceptable: this endpoint answers {', '.join(offered)}.", 406)
    return chosen


if sys.version_info >= (3, 11):
    def _b64decode_strict(data: str) -> bytes:
        # What base64.b64decode(data, validate=True) runs on 3.11+, without its two Python frames
        # (about 0.4 us per record). A non-ASCII str raises UnicodeEncodeError, a ValueError, as there.
        return binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
else:  # pragma: no cover - Python 3.10
    def _b64decode_strict(data: str) -> bytes:
        return base64.b64decode(data, validate=True)


def b64decode(data: Any, what: str) -> bytes:
    if not isinstance(data, str):
        raise RestError(400, f"Bad Request: {what} data={_short(data)} is not a base64 string.", 400)
    try:
        return _b64decode_strict(data)
    except (binascii.Error, ValueError):
        raise RestError(400, f"Bad Request: {what} data={_short(data)} is not a valid base64 string.", 400) from None


def b64encode(data: bytes | None) -> str | None:
    # binascii.b2a_base64(newline=False) is what base64.b64encode runs, minus a Python frame.
    return None if data is None else binascii.b2a_base64(data, newline=False).decode("ascii")


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_ISO_CACHE: dict[int, str] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
# 9999-12-31T23:59:59.999Z: the last instant ISO-8601 (and the REST Proxy's timestamps) can write.
MAX_TIMESTAMP_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // _ONE_MS


def iso_timestamp(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 with millisecond precision and ``Z``, as the REST Proxy."""
    text = _ISO_CACHE.get(ms)
    if text is None:
        dt = _EPOCH + timedelta(milliseconds=ms)  # exact: no float rounding of the milliseconds
        text = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        _ISO_CACHE[ms] = text
    return text


def parse_timestamp(value: Any) -> int:
    """An ISO-8601 string (or epoch milliseconds) as epoch milliseconds; 400 otherwise."""
    if isinstance(value, bool):
        raise RestError(400, f"Bad Request: timestamp {value!r} is not an ISO-8601 timestamp.", 400)
    if isinstance(value, int):
        if value < 0:
            raise RestError(400, "Bad Request: timestamp must not be negative.", 400)
        if value > MAX_TIMESTAMP_MS:
            raise RestError(400, "Bad Request: timestamp must not be after 9999-12-31T23:59:59.999Z.", 400)
        return value
    if not isinstance(value, str):
        raise RestError(400, f"Bad Request: timestamp {_short(value)} is not an ISO-8601 timestamp.", 400)
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise RestError(400, f"Bad Request: timestamp {value!r} is not an ISO-8601 timestamp.", 400) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ms = (dt - _EPOCH) // _ONE_MS  # integer arithmetic: dt.timestamp() * 1000 loses a millisecond
    if ms < 0:
        raise RestError(400, "Bad Request: timestamp must not be before 1970.", 400)
    if ms > MAX_TIMESTAMP_MS:
        raise RestError(400, "Bad Request: timestamp must not be after 9999-12-31T23:59:59.999Z.", 400)
    return ms


def query_int(name: str, default: int | None, minimum: int = 0, maximum: int = 2**63 - 1) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RestError(400, f"Query parameter {name}={raw!r} is not an integer.", 400) from None
    if not minimum <= value <= maximum:
        raise RestError(400, f"Query parameter {name}={value} must be between {minimum} and {maximum}.", 400)
    return value


def topic_partition_offsets(items: Any, error_code: int) -> list[tuple[str, int, int, str | None]]:
    """A v3 offsets list ``[{"topic_name", "partition_id", "offset", "metadata"?}]`` as
    (topic, partition, offset, metadata); 422 for a malformed entry, 404 for an unknown topic
    or partition."""
    from service.errors import topic_not_found

    if not isinstance(items, list) or not items:
        raise RestError(422, "Payload error. offsets must be a non-empty list.", error_code)
    topics = server().controller.image().topics
    out = []
    for o in items:
        if not isinstance(o, dict) or not isinstance(o.get("topic_name"), str):
            raise RestError(422, "Payload error. Each offset needs topic_name, partition_id and offset.", error_code)
        topic = topics.get(o["topic_name"])
        if topic is None:
            raise topic_not_found(o["topic_name"])
        for name, limit in (("partition_id", 2**31 - 1), ("offset", 2**63 - 2)):
            v = o.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
                raise RestError(422, f"Payload error. {name} must be an integer between 0 and {limit}.", error_code)
        metadata = o.get("metadata")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 4096):
            raise RestError(422, "Payload error. metadata must be a string of at most 4096 characters.", error_code)
        out.append((topic.topic_name, topic.partition(o["partition_id"]).partition_id, o["offset"], metadata))
    return out
