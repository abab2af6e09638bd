"""``GET /metrics``: Prometheus text of the cluster's state and of the HTTP requests served.

Requests are counted and timed by endpoint (the route's rule, so the label set stays
bounded), method, status and ``acks``. Under ``dlog serve`` every gunicorn worker writes its
request metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode; the command points it at ``<data dir>/.prometheus``), so any worker's answer covers all
of them; elsewhere (one process) they are the process's own. The cluster's state comes from
``service.metrics``.
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

from service.api.http import server
from service.errors import KafkaError
from service.metrics import ClusterCollector
from service.types import Acks

bp = Blueprint("metrics", __name__)

_REGISTRY = CollectorRegistry()  # this process's request metrics (outside multiprocess mode)
_LABELS = ["endpoint", "method", "status", "acks"]
REQUESTS = Counter("dlog_http_requests", "HTTP requests answered.", _LABELS, registry=_REGISTRY)
LATENCY = Histogram("dlog_http_request_duration_seconds", "Time from a request's arrival at the app to its "
                    "response.", _LABELS, registry=_REGISTRY,
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                             30.0, 60.0))
_ACKS_LABEL = {Acks.NONE: "0", Acks.LEADER: "1", Acks.ALL: "all"}
# Label values come only from bounded sets: a client inventing methods must not grow them.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The text format generate_latest writes; every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def instrument(app: Flask) -> None:
    """Count and time every request of ``app``: the WSGI call notes when it arrived, and the
    response, once made, is counted with its route and status. About 7 us per request
    (measured in-process, multiprocess mode; 25 us with a before_request hook and ``g``)."""
    wsgi_app = app.wsgi_app

    def timed(environ, start_response):
        environ["dlog.started"] = time.perf_counter()
        return wsgi_app(environ, start_response)

    app.wsgi_app = timed
    children: dict[tuple, tuple] = {}  # label values -> (counter, histogram): skips labels()'s lock

    @app.after_request
    def _observe(response: Response) -> Response:
        req = request._get_current_object()
        started = req.environ.get("dlog.started")
        if started is not None:
            rule = req.url_rule
            acks = req.args.get("acks") if "acks" in req.environ.get("QUERY_STRING", "") else None
            labels = (rule.rule if rule is not None else "unmatched",
                      req.method if req.method in _METHODS else "other", str(response.status_code),
                      _acks_label(acks))
            pair = children.get(labels)
            if pair is None:
                pair = children.setdefault(labels, (REQUESTS.labels(*labels), LATENCY.labels(*labels)))
            pair[0].inc()
            pair[1].observe(time.perf_counter() - started)
        return response


def _acks_label(raw: str | None) -> str:
    if raw is None:
        return ""
    try:
        return _ACKS_LABEL[Acks.parse(raw)]
    except KafkaError:
        return "invalid"


@bp.get("/metrics")
def metrics():
    """Prometheus text (format 0.0.4): partitions' offsets, ISR, under-replicated and offline
    partitions, brokers, consumer group lag, and HTTP requests by endpoint, status and acks."""
    requests_registry = _REGISTRY
    directory = _multiprocess_dir()
    if directory is not None:
        requests_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests_registry, path=directory)
    cluster = CollectorRegistry(auto_describe=False)
    cluster.register(ClusterCollector(server()))
    return Response(generate_latest(cluster) + generate_latest(requests_registry), mimetype=None,
                    headers={"Content-Type": CONTENT_TYPE})
