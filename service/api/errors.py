"""The one error handler: every error becomes ``{"error_code", "message"[, "kafka_error"]}``."""
from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from service.api.http import json_response
from service.errors import DlogError, Errors, KafkaError

logger = logging.getLogger(__name__)


def error_body(exc: DlogError) -> dict:
    body = {"error_code": exc.error_code, "message": exc.message}
    if isinstance(exc, KafkaError):
        body["kafka_error"] = exc.error.name
    return body


def error_response(exc: DlogError):
    headers = {}
    if isinstance(exc, KafkaError) and exc.status == 503:
        headers["Retry-After"] = "1"
    return json_response(error_body(exc), exc.status, headers=headers)


def register(app: Flask) -> None:
    @app.errorhandler(DlogError)
    def _dlog_error(exc: DlogError):
        if isinstance(exc, KafkaError) and exc.error is Errors.UNKNOWN_SERVER_ERROR:
            logger.error("unknown server error: %s", exc.message)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        # Keep the exception's own headers but its HTML content type: a 405 must say which
        # methods the resource allows (``Allow``, RFC 9110 15.5.6).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_response({"error_code": status, "message": f"HTTP {status} {exc.name}"}, status, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unexpected error")
        return json_response({"error_code": 500, "message": f"Internal server error: {type(exc).__name__}",
                              "kafka_error": Errors.UNKNOWN_SERVER_ERROR.name}, 500)
