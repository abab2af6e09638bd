"""The HTTP layer: Flask blueprints for the REST Proxy v2/v3 shapes and dlog's extensions.

This package is the only one that imports Flask. Each handler parses the request, makes one
domain call on the ``DlogServer`` and serialises the answer.
"""
from __future__ import annotations

import logging

from flask import Flask

from service.config import Config
from service.server import DlogServer

logger = logging.getLogger(__name__)


def create_app(config: Config | None = None, server: DlogServer | None = None, *,
               start_background: bool = True) -> Flask:
    """Build the Flask app around a ``DlogServer`` (made from ``config`` or the environment).

    Start-up (migrations, cluster bootstrap) finishes before the app is returned, so a worker
    never serves from an unmigrated file.
    """
    from service.api import (admin, consumer_groups, consumers, errors, health, metrics, produce, producers,
                             transactions, v2)

    if server is None:
        server = DlogServer(config or Config.from_env())
        server.start_up(background=start_background)
    app = Flask("dlog")
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = None  # checked per request with a Kafka-style 413 body
    app.extensions["dlog"] = server
    errors.register(app)
    metrics.instrument(app)
    for blueprint in (health.bp, metrics.bp, admin.bp, produce.bp, producers.bp, transactions.bp,
                      consumer_groups.bp, consumers.bp, v2.bp):
        app.register_blueprint(blueprint)
    return app
