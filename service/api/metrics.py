"""``GET /metrics``: Prometheus text of the cluster's state and of the HTTP requests served.

Requests are counted and timed by endpoint (the route's rule, so the label set stays
bounded), method, status and ``acks``. Under ``dlog serve`` every gunicorn worker writes its
request metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode, set up by the command), so any worker's answer covers all of them; elsewhere (one
process) they are the process's own. The cluster's state comes from ``service.metrics``.
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
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
LATENCY = Histogram("dlog_http_request_duration_seconds", "Time from a request's arrival at its handler to its "
                    "answer.", _LABELS, registry=_REGISTRY,
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                             30.0, 60.0))
_ACKS_LABEL = {Acks.NONE: "0", Acks.LEADER: "1", Acks.ALL: "all"}
# The text format generate_latest writes; every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def instrument(app: Flask) -> None:
    """Count and time every request of ``app``."""

    @app.before_request
    def _start() -> None:
        g.dlog_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("dlog_started", None)
        if started is not None:
            labels = (request.url_rule.rule if request.url_rule is not None else "unmatched", request.method,
                      str(response.status_code), _acks_label(request.args.get("acks")))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
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
