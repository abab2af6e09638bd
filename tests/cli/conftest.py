"""Fixtures of the CLI suite: a real dlog (DlogServer + Flask app) served over HTTP by
werkzeug in a thread, a ``CliRunner`` wrapper that passes ``--url``, and a stub server for
answers the real one cannot give on demand (503, 504, endpoints not built yet).
"""
from __future__ import annotations

import itertools
import re
import threading
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cli.main import cli
from service.config import Config
from service.server import DlogServer


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class Served:
    """A WSGI app served on a free port of 127.0.0.1 until ``close()``."""

    def __init__(self, app) -> None:
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="cli-test-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def dlog_server(tmp_path_factory) -> Iterator[DlogServer]:
    srv = DlogServer(Config(data_dir=str(tmp_path_factory.mktemp("cli") / "data"), brokers=3))
    srv.start_up(background=False)
    try:
        yield srv
    finally:
        srv.shut_down()


@pytest.fixture(scope="session")
def dlog_app(dlog_server):
    from service.api import create_app

    return create_app(server=dlog_server)


@pytest.fixture(scope="session")
def dlog_url(dlog_app) -> Iterator[str]:
    served = Served(dlog_app)
    try:
        yield served.url
    finally:
        served.close()


_counter = itertools.count()


@pytest.fixture
def topic_name(request) -> str:
    """A topic name no other test uses."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"{base}-{next(_counter)}"


Invoke = Callable[..., Result]


def _invoke(url: str) -> Invoke:
    def invoke(*args: str, input: bytes | str | None = None, env: dict | None = None, url_arg: bool = True) -> Result:
        argv = list(args) + (["--url", url] if url_arg else [])
        return CliRunner().invoke(cli, argv, input=input, env=env, prog_name="dlog", catch_exceptions=False)

    return invoke


@pytest.fixture
def dlog(dlog_url) -> Invoke:
    """``dlog("topic", "list")`` runs the CLI against the real server; the result has
    ``exit_code``, ``stdout``, ``stderr`` and ``output`` (both)."""
    return _invoke(dlog_url)


@pytest.fixture
def make_topic(dlog) -> Callable[..., str]:
    def make(name: str, partitions: int = 1, replicas: int = 1, *configs: str) -> str:
        args = ["topic", "create", name, "-p", str(partitions), "-r", str(replicas)]
        for c in configs:
            args += ["-c", c]
        result = dlog(*args)
        assert result.exit_code == 0, result.output
        return name

    return make


# ---------------------------------------------------------------------------- stub server
class Stub:
    """Canned answers by (method, path): ``stub.on("GET", "/x", status, json_body)`` or a
    callable ``handler(request) -> (status, body)``; a ``str`` body is sent as is. Unknown routes answer 404 as Flask does."""

    CLUSTER = "stub-cluster-000000000"

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.on("GET", "/v3/clusters", 200, {"data": [{"cluster_id": self.CLUSTER}]})

    def on(self, method: str, path: str, status: int = 200, body=None, handler=None) -> None:
        self.routes[(method, path)] = handler or (lambda req: (status, body))

    def __call__(self, environ, start_response):
        import json

        req = Request(environ)
        self.requests.append((req.method, req.path, dict(req.args)))
        route = self.routes.get((req.method, req.path))
        if route is None:
            status, body = 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
        else:
            status, body = route(req)
        text = body if isinstance(body, str) else "" if body is None else json.dumps(body)
        resp = Response(text, status=status, mimetype="application/json")
        return resp(environ, start_response)


@pytest.fixture
def stub() -> Iterator[tuple[Stub, Invoke]]:
    s = Stub()
    served = Served(s)
    try:
        yield s, _invoke(served.url)
    finally:
        served.close()


# ---------------------------------------------------------------------------- fault proxy
class Proxy:
    """The real app behind a hook: ``proxy.hook = fn(method, path, body, forward)`` sees every
    request; ``forward()`` runs it on the real server and returns ``(status, body)``. The hook
    returns ``(status, body)`` to answer, ``DROP`` to close the connection without an answer,
    or None to answer what the real server answered (forwarding first if it has not)."""

    DROP = object()

    def __init__(self, app) -> None:
        self.app = app
        self.hook: Callable | None = None
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    def __call__(self, environ, start_response):
        import io
        import socket

        from werkzeug.test import run_wsgi_app

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        with self.lock:
            self.requests.append((method, path))
        answered: list = []

        def forward() -> tuple[int, bytes]:
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO(body)
            app_iter, status, headers = run_wsgi_app(self.app, env, buffered=True)
            answered[:] = [int(status.split()[0]), b"".join(app_iter), headers.get("Content-Type", "")]
            return answered[0], answered[1]

        outcome = self.hook(method, path, body, forward) if self.hook else None
        if outcome is Proxy.DROP:
            environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            start_response("500 Dropped", [("Content-Type", "text/plain")])
            return [b""]
        if outcome is None:
            if not answered:
                forward()
            status, data, ctype = answered
        else:
            status, data = outcome
            data = data if isinstance(data, bytes) else __import__("json").dumps(data).encode()
            ctype = "application/json"
        start_response(f"{status} X", [("Content-Type", ctype or "application/json"),
                                       ("Content-Length", str(len(data)))])
        return [data]


@pytest.fixture
def proxy(dlog_app) -> Iterator[tuple[Proxy, Invoke, str]]:
    """``(proxy, dlog, url)``: the CLI against the real server behind a ``Proxy``."""
    p = Proxy(dlog_app)
    served = Served(p)
    try:
        yield p, _invoke(served.url), served.url
    finally:
        served.close()
