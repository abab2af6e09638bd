"""Helpers of the API tests: delivery reports, error bodies, base64."""
from __future__ import annotations

import base64

import orjson

V2_JSON = "application/vnd.kafka.v2+json"
V2_EMBEDDED_JSON = "application/vnd.kafka.json.v2+json"
V2_EMBEDDED_BINARY = "application/vnd.kafka.binary.v2+json"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def reports(resp) -> list[dict]:
    """The delivery reports of a v3 produce: one JSON object per line."""
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [orjson.loads(line) for line in resp.get_data().split(b"\r\n") if line.strip()]


def assert_error(resp, status: int, error_code: int | None = None) -> dict:
    """A JSON error body ``{"error_code", "message"}`` whose code agrees with the status."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json"
    body = orjson.loads(resp.get_data())
    assert isinstance(body, dict)
    assert isinstance(body.get("error_code"), int) and isinstance(body.get("message"), str), body
    assert body["message"]
    code = body["error_code"]
    assert code == status or code // 100 == status, body
    if error_code is not None:
        assert code == error_code, body
    return body


def concat(*records: dict) -> bytes:
    """Records as concatenated JSON, the v3 produce body."""
    return b" ".join(orjson.dumps(r) for r in records)
