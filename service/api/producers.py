"""``POST /v3/clusters/{cid}/producers``: InitProducerId (a dlog extension)."""
from __future__ import annotations

from flask import Blueprint

from service.api.admin import _cluster
from service.api.http import body_json, json_response, server
from service.errors import PAYLOAD_ERROR, RestError

bp = Blueprint("producers", __name__, url_prefix="/v3")


@bp.post("/clusters/<cid>/producers")
def init_producer_id(cid: str):
    """InitProducerId: ``{}`` gives a new idempotent producer id at epoch 0;
    ``{"transactional_id": "tx-1", "transaction_timeout_ms": 60000}`` gives the transactional
    id's producer id with its epoch bumped, fencing older instances and aborting (or
    finishing) their open transaction.

    Send ``producer_id``, ``producer_epoch`` and per-record ``sequence`` (v3) or
    ``base_sequence`` (v2) with a produce to a named partition; a retry of one of the last
    five batches answers with the original offsets and ``"duplicate": true``.
    """
    _cluster(cid)
    body = body_json(required=False, empty_ok=True) or {}
    if not isinstance(body, dict):
        raise RestError(422, "Payload error. The body must be a JSON object.", PAYLOAD_ERROR)
    unknown = set(body) - {"transactional_id", "transaction_timeout_ms"}
    if unknown:
        raise RestError(422, f"Payload error. Unrecognized field(s): {', '.join(sorted(unknown))}.", PAYLOAD_ERROR)
    result = server().transaction_coordinator.handle_init_producer_id(
        body.get("transactional_id"), body.get("transaction_timeout_ms"))
    return json_response({"producer_id": result.producer_id, "producer_epoch": result.producer_epoch,
                          "transactional_id": result.transactional_id})
