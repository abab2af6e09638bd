"""The small HTTP client every network command uses, and the options that configure it.

The base URL comes from ``--url`` or ``DLOG_URL`` (default ``http://127.0.0.1:8082``). An
error body ``{"error_code", "message"[, "kafka_error"]}`` becomes a ``DlogHTTPError``, a
``click.ClickException`` whose exit status says what kind of failure it was:

====  =========================================================================
1     anything else (a 5xx other than 503/504, an unreadable answer)
2     bad input: the server refused the request (4xx other than 404)
3     not found (404): unknown topic, partition, broker or endpoint
4     unavailable, retriable (503, or the server cannot be reached)
5     timed out, outcome unknown (504, or no answer in time)
====  =========================================================================

Nothing here imports Flask or touches a data directory: the CLI works against any dlog.
"""
from __future__ import annotations

import contextlib
import functools
import json
import shlex
import signal
import sys
import threading
from urllib.parse import quote
from typing import Any, Callable, Iterable, Iterator, Mapping

import click
import requests

DEFAULT_URL = "http://127.0.0.1:8082"
JSON = "application/json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"

EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_TIMEOUT = 5

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0


def exit_code_for(status: int) -> int:
    """The exit status for an HTTP status (or a REST Proxy error code such as 40401)."""
    if status == 50003:  # the REST Proxy's "retriable Kafka error"
        return EXIT_UNAVAILABLE
    if status >= 1000:
        status //= 100
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 503:
        return EXIT_UNAVAILABLE
    if status == 504:
        return EXIT_TIMEOUT
    if 400 <= status < 500:
        return EXIT_BAD_INPUT
    return EXIT_OTHER


class DlogHTTPError(click.ClickException):
    """An error answer (or no answer) from dlog, printed as ``Error: <message> (<KAFKA_ERROR>)``.

    :param message: the server's message.
    :param status: the HTTP status (0 when there was no answer).
    :param error_code: the body's ``error_code`` (the REST Proxy's code, e.g. 40401).
    :param kafka_error: the Kafka error name, when a Kafka error was the cause.
    """

    def __init__(self, message: str, status: int = 0, error_code: int | None = None,
                 kafka_error: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.kafka_error = kafka_error
        if exit_code is None:
            # The REST Proxy's error_code names the kind more precisely than the status does.
            exit_code = exit_code_for(error_code if error_code else status)
        self.exit_code = exit_code

    @classmethod
    def from_body(cls, body: Mapping[str, Any], status: int) -> "DlogHTTPError":
        code = body.get("error_code")
        return cls(str(body.get("message") or f"HTTP {status}"), status,
                   code if isinstance(code, int) else None, body.get("kafka_error"))

    def format_message(self) -> str:
        detail = [self.kafka_error] if self.kafka_error else []
        if self.status:
            detail.append(f"HTTP {self.status}")
        return f"{self.message} ({', '.join(detail)})" if detail else self.message


def _error_from_response(resp: requests.Response) -> DlogHTTPError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        return DlogHTTPError.from_body(body, resp.status_code)
    text = " ".join(resp.text.split())[:200] or resp.reason or ""
    return DlogHTTPError(f"HTTP {resp.status_code} {text}".strip(), resp.status_code)


class Client:
    """One dlog server: JSON requests with error translation and an optional curl echo.

    A ``Client`` holds one ``requests.Session``; use ``clone()`` for another thread.
    """

    def __init__(self, url: str = DEFAULT_URL, show_curl: bool = False,
                 timeout_s: float = READ_TIMEOUT_S) -> None:
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.show_curl = show_curl
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "dlog-cli"
        self._cluster_id: str | None = None

    def clone(self) -> "Client":
        other = Client(self.url, self.show_curl, self.timeout_s)
        other._cluster_id = self._cluster_id
        return other

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, data: bytes | None = None, headers: Mapping[str, str] | None = None,
                timeout_s: float | None = None) -> requests.Response:
        """Send one request; return the response when its status is below 400.

        :raises DlogHTTPError: on an error status, a refused connection or a timeout.
        """
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", JSON)
        params = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.url + path
        if self.show_curl:
            click.echo(_curl(method, url, params, headers, data), err=True)
        try:
            resp = self.session.request(method, url, params=params, data=data, headers=headers,
                                        timeout=(CONNECT_TIMEOUT_S, timeout_s or self.timeout_s))
        except requests.exceptions.ConnectTimeout as exc:
            raise self._unreachable(exc) from None
        except requests.exceptions.Timeout:
            raise self._timeout(method, path) from None
        except requests.exceptions.ConnectionError as exc:
            if _dropped(exc):
                raise self._dropped(method, path) from None
            raise self._unreachable(exc) from None
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        return resp

    def _unreachable(self, exc: Exception) -> DlogHTTPError:
        return DlogHTTPError(f"Cannot reach dlog at {self.url}: {_reason(exc)}. Is `dlog serve` running? "
                             "(--url or DLOG_URL choose the server)", exit_code=EXIT_UNAVAILABLE)

    def _dropped(self, method: str, path: str) -> DlogHTTPError:
        if method == "GET":
            return DlogHTTPError(f"{self.url} closed the connection before answering GET {path}.",
                                 exit_code=EXIT_UNAVAILABLE)
        return DlogHTTPError(f"{self.url} closed the connection before answering {method} {path}. The outcome is "
                             "unknown: the request may or may not have taken effect.", exit_code=EXIT_TIMEOUT)

    def _timeout(self, method: str, path: str) -> DlogHTTPError:
        note = " The outcome is unknown: the request may or may not have taken effect." if method != "GET" else ""
        return DlogHTTPError(f"No answer from {self.url} to {method} {path} in time.{note}", exit_code=EXIT_TIMEOUT)

    def get(self, path: str, **kw: Any) -> Any:
        resp = self.request("GET", path, **kw)
        try:
            return resp.json()
        except ValueError:
            raise DlogHTTPError(f"GET {path} answered {resp.status_code} without JSON; is {self.url} a dlog?",
                                resp.status_code, exit_code=EXIT_OTHER) from None

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return _json_or_none(self.request("POST", path, json_body=body, **kw))

    def patch(self, path: str, body: Any, **kw: Any) -> Any:
        return _json_or_none(self.request("PATCH", path, json_body=body, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return _json_or_none(self.request("DELETE", path, **kw))

    # ------------------------------------------------------------------ v3 paths
    def cluster_id(self) -> str:
        """The cluster's id (``GET /v3/clusters``), fetched once."""
        if self._cluster_id is None:
            data = self.get("/v3/clusters").get("data") or []
            if not data:
                raise DlogHTTPError(f"{self.url} lists no cluster.", exit_code=EXIT_OTHER)
            self._cluster_id = data[0]["cluster_id"]
        return self._cluster_id

    def v3(self, path: str = "") -> str:
        """``/v3/clusters/{cluster_id}`` + ``path``."""
        return f"/v3/clusters/{self.cluster_id()}{path}"


def _json_or_none(resp: requests.Response) -> Any:
    if resp.status_code == 204 or not resp.content.strip():
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def _dropped(exc: Exception) -> bool:
    """The server accepted the connection, then closed it without an answer."""
    text = str(exc)
    return any(marker in text for marker in ("Connection aborted", "RemoteDisconnected", "reset by peer"))


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "nodename nor servname", "timed out"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def _curl(method: str, url: str, params: Mapping[str, Any], headers: Mapping[str, str], data: bytes | None) -> str:
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    parts = ["curl", "-sS"]
    if method != "GET":
        parts += ["-X", method]
    parts.append(shlex.quote(url))
    for name, value in headers.items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if data is not None:
        text = data.decode("utf-8", "replace")
        parts += ["--data-binary", shlex.quote(text if len(text) <= 400 else text[:400] + "...")]
    return " ".join(parts)


# ---------------------------------------------------------------------------- shared options
def with_client(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--url`` and ``--show-curl`` to a command and pass it a ``Client`` first."""

    @functools.wraps(func)
    def wrapper(*args: Any, url: str, show_curl: bool, **kwargs: Any) -> Any:
        with Client(url, show_curl=show_curl) as client:
            return func(client, *args, **kwargs)

    wrapper = click.option("--show-curl", is_flag=True,
                           help="Print each HTTP request as a curl command on stderr.")(wrapper)
    wrapper = click.option("--url", envvar="DLOG_URL", default=DEFAULT_URL, show_default=True, metavar="URL",
                           help="dlog's base URL (env DLOG_URL).")(wrapper)
    return wrapper


def seg(name: str) -> str:
    """``name`` quoted as one path segment (a topic name cannot add path levels)."""
    return quote(name, safe="")


def key_values(pairs: Iterable[str], what: str) -> list[tuple[str, str]]:
    """``["a=1", "b=2"]`` as ``[("a", "1"), ("b", "2")]``; a usage error for a pair without ``=``."""
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not name=value.", param_hint=what)
        out.append((name, value))
    return out


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (in the main thread only), so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
