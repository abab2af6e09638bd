r"""Record text: backslash escapes, rpk/kcat-style ``%`` format strings, JSON lines, and the
offset grammar of ``dlog consume``.

Format tokens (rpk and kcat agree on these letters):

====  ==========================================  ====  ===============================
%t    topic                                       %T    timestamp, epoch ms (kcat)
%p    partition                                   %d    timestamp, epoch ms (rpk)
%o    offset                                      %h    headers as name=value,name=value
%k    key (empty when null)                       %H    number of headers
%K    key length (-1 when null)                   %%    a literal %
%v    value (also %s, as kcat)                    %V    value length, -1 when null (also %S)
====  ==========================================  ====  ===============================

Escapes ``\n \t \r \\ \0 \xHH`` work in format strings and key separators.
"""
from __future__ import annotations

import base64
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import click
import orjson

_SIMPLE_ESCAPES = {ord("n"): b"\n", ord("t"): b"\t", ord("r"): b"\r", ord("\\"): b"\\", ord("0"): b"\0"}
_HEX = re.compile(rb"[0-9a-fA-F]{2}")
FORMAT_TOKENS = "tpokKvsVSTdhH%"


def unescape(text: str) -> bytes:
    r"""``text`` as UTF-8 bytes with ``\n \t \r \\ \0 \xHH`` replaced; other backslashes stay."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            n = raw[i + 1]
            if n in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[n]
                i += 2
                continue
            if n == ord("x") and _HEX.fullmatch(raw[i + 2:i + 4]):
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
                continue
        out.append(c)
        i += 1
    return bytes(out)


def data_field(raw: bytes) -> dict:
    """A key or value as v3 ``{"type", "data"}``: STRING when it is UTF-8, BINARY (base64) otherwise."""
    try:
        return {"type": "STRING", "data": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"type": "BINARY", "data": base64.b64encode(raw).decode("ascii")}


# ---------------------------------------------------------------------------- consumed records
class Consumed(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    @classmethod
    def from_v2(cls, topic: str, r: dict) -> "Consumed":
        """A record of the v2 binary read (base64 key, value and header values)."""
        headers = [(h.get("name", h.get("key")), _b64(h.get("value"))) for h in (r.get("headers") or [])]
        return cls(topic, r["partition"], r["offset"], r.get("timestamp"), _b64(r.get("key")), _b64(r.get("value")),
                   headers)


def _b64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def compile_format(fmt: str) -> list[bytes | str]:
    """``fmt`` as literal byte chunks and one-letter tokens; a usage error for an unknown ``%x``."""
    parts: list[bytes | str] = []
    literal = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in FORMAT_TOKENS:
                bad = fmt[i:i + 2]
                raise click.BadParameter(f"unknown token {bad!r}; known: "
                                         + " ".join("%" + t for t in FORMAT_TOKENS), param_hint="'-f' / '--format'")
            if literal:
                parts.append(unescape("".join(literal)))
                literal = []
            token = fmt[i + 1]
            if token == "%":
                parts.append(b"%")
            else:
                parts.append(token)
            i += 2
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append(unescape("".join(literal)))
    return parts


def render(parts: list[bytes | str], r: Consumed) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, bytes):
            out += part
        elif part == "v" or part == "s":
            out += r.value or b""
        elif part == "k":
            out += r.key or b""
        elif part == "o":
            out += str(r.offset).encode()
        elif part == "p":
            out += str(r.partition).encode()
        elif part == "t":
            out += r.topic.encode()
        elif part in ("T", "d"):
            out += str(r.timestamp if r.timestamp is not None else -1).encode()
        elif part in ("V", "S"):
            out += str(-1 if r.value is None else len(r.value)).encode()
        elif part == "K":
            out += str(-1 if r.key is None else len(r.key)).encode()
        elif part == "h":
            out += b",".join(n.encode() + b"=" + (v or b"") for n, v in r.headers)
        elif part == "H":
            out += str(len(r.headers)).encode()
    return bytes(out)


def _text(raw: bytes | None, doc: dict, field: str) -> None:
    if raw is None:
        doc[field] = None
        return
    try:
        doc[field] = raw.decode("utf-8")
    except UnicodeDecodeError:
        doc[field] = base64.b64encode(raw).decode("ascii")
        doc[f"{field}_encoding"] = "base64"


def json_line(r: Consumed) -> bytes:
    """One record as a JSON object (kcat -J's fields); key, value and header values are text
    when UTF-8, else base64 with ``<field>_encoding: "base64"``."""
    doc: dict[str, Any] = {"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp}
    _text(r.key, doc, "key")
    _text(r.value, doc, "value")
    headers = []
    for name, value in r.headers:
        h: dict[str, Any] = {"name": name}
        _text(value, h, "value")
        headers.append(h)
    doc["headers"] = headers
    return orjson.dumps(doc) + b"\n"


# ---------------------------------------------------------------------------- offsets
class OffsetSpec(NamedTuple):
    """One end of an offset range: ``base`` is start, end, abs or ts; ``delta`` counts from it
    (for ts: the timestamp in epoch ms, which the caller turns into an abs offset)."""

    base: str
    delta: int

    def resolve(self, log_start: int, end: int) -> int:
        if self.base == "start":
            offset = log_start + self.delta
        elif self.base == "end":
            offset = end - self.delta
        elif self.base == "abs":
            offset = self.delta
        else:
            raise ValueError("a timestamp offset must be looked up first")
        return min(max(offset, log_start), end)


_START = ("start", "oldest", "beginning", "earliest")
_END = ("end", "newest", "latest")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RELATIVE = re.compile(r"-(\d+)(ms|s|m|h|d)")
TIMESTAMP_HELP = ("@T: the first record whose timestamp is at or after T, where T is epoch milliseconds "
                  "(13 digits) or seconds (10 digits), an ISO-8601 date or time (2024-05-01, "
                  "2024-05-01T12:00:00Z; UTC unless it names a zone), now, or a time ago (-15m, -2h, "
                  "-1d; units ms s m h d)")


def parse_timestamp(text: str, now_ms: int | None = None) -> int:
    """A timestamp as epoch milliseconds (see ``TIMESTAMP_HELP``); ValueError when malformed."""
    t = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if t.lower() == "now":
        return now
    relative = _RELATIVE.fullmatch(t.lower())
    if relative:
        return max(0, now - int(relative.group(1)) * _UNITS_MS[relative.group(2)])
    if t.isdigit():
        return int(t) * 1000 if len(t) == 10 else int(t)
    iso = t[:-1] + "+00:00" if t[-1:] in ("Z", "z") else t
    dt = datetime.fromisoformat(iso)  # ValueError when it is not ISO-8601
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    if ms < 0:
        raise ValueError("before 1970")
    return ms


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_offset_spec(text: str, what: str = "'-o' / '--offset'", now_ms: int | None = None) -> OffsetSpec:
    t = text.strip().lower()
    if t in _START:
        return OffsetSpec("start", 0)
    if t in _END:
        return OffsetSpec("end", 0)
    if t.startswith("@"):
        try:
            return OffsetSpec("ts", parse_timestamp(text.strip()[1:], now_ms))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a timestamp. {TIMESTAMP_HELP}.", param_hint=what) from None
    try:
        if t.startswith("+"):
            return OffsetSpec("start", _non_negative(t[1:]))
        if t.startswith("-"):
            return OffsetSpec("end", _non_negative(t[1:]))
        return OffsetSpec("abs", _non_negative(t))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not start, end, N, +N, -N, @TIMESTAMP or FROM:TO.",
                                 param_hint=what) from None


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _split_range(text: str) -> tuple[str, str] | None:
    """``FROM:TO`` split at its separator, None without one. A timestamp FROM may hold colons
    itself (12:30:00), so after ``@...`` the separator is the colon that ends the text or is
    followed by @, +, - or a start/end word."""
    if not text.startswith("@"):
        if ":" not in text:
            return None
        first, _, second = text.partition(":")
        return first, second
    for i, ch in enumerate(text):
        if ch != ":":
            continue
        rest = text[i + 1:].strip().lower()
        if not rest or rest[0] in "@+-" or rest in _START or rest in _END:
            return text[:i], text[i + 1:]
    return None


def parse_offset_range(text: str) -> tuple[OffsetSpec, OffsetSpec | None]:
    """``FROM`` or ``FROM:TO`` (``TO`` exclusive; an empty ``FROM`` is start, an empty ``TO``
    follows forever)."""
    now_ms = int(time.time() * 1000)  # one "now" for both ends of @-1h:@now
    parts = _split_range(text)
    if parts is None:
        return parse_offset_spec(text, now_ms=now_ms), None
    first, second = parts
    start = parse_offset_spec(first, now_ms=now_ms) if first.strip() else OffsetSpec("start", 0)
    stop = parse_offset_spec(second, now_ms=now_ms) if second.strip() else None
    return start, stop
