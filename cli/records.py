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
    """One end of an offset range: ``base`` is start, end or abs; ``delta`` counts from it."""

    base: str
    delta: int

    def resolve(self, log_start: int, end: int) -> int:
        if self.base == "start":
            offset = log_start + self.delta
        elif self.base == "end":
            offset = end - self.delta
        else:
            offset = self.delta
        return min(max(offset, log_start), end)


_START = ("start", "oldest", "beginning", "earliest")
_END = ("end", "newest", "latest")


def parse_offset_spec(text: str, what: str = "'-o' / '--offset'") -> OffsetSpec:
    t = text.strip().lower()
    if t in _START:
        return OffsetSpec("start", 0)
    if t in _END:
        return OffsetSpec("end", 0)
    if t.startswith("@"):
        raise click.BadParameter(f"{text!r}: timestamp offsets (@...) are not implemented yet; use start, end, "
                                 "N, +N or -N.", param_hint=what)
    try:
        if t.startswith("+"):
            return OffsetSpec("start", _non_negative(t[1:]))
        if t.startswith("-"):
            return OffsetSpec("end", _non_negative(t[1:]))
        return OffsetSpec("abs", _non_negative(t))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not start, end, N, +N, -N or FROM:TO.", param_hint=what) from None


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def parse_offset_range(text: str) -> tuple[OffsetSpec, OffsetSpec | None]:
    """``FROM`` or ``FROM:TO`` (``TO`` exclusive; an empty ``FROM`` is start, an empty ``TO``
    follows forever)."""
    if ":" not in text:
        return parse_offset_spec(text), None
    first, _, second = text.partition(":")
    start = parse_offset_spec(first) if first.strip() else OffsetSpec("start", 0)
    stop = parse_offset_spec(second) if second.strip() else None
    return start, stop
