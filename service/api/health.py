"""Liveness, readiness and the OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, current_app

from service.api.http import json_response, server

bp = Blueprint("health", __name__)


@bp.get("/health/live")
def live():
    """Liveness: the process answers HTTP."""
    return json_response({"status": "live"})


@bp.get("/health/ready")
def ready():
    """Readiness: start-up (migrations, bootstrap, recovery) has finished and the controller file answers."""
    s = server()
    if not s.ready:
        return json_response({"status": "starting", "error_code": 503, "message": "Start-up is not finished."}, 503)
    image = s.controller.image()
    return json_response({"status": "ready", "cluster_id": image.cluster_id,
                          "brokers": {b.broker_id: b.status for b in image.brokers}})


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of every endpoint, generated from the registered routes."""
    from service.api.openapi import build_spec

    return json_response(build_spec(current_app))
