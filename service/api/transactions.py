"""Transactions (dlog extensions in the v3 style): transactional offsets, commit, abort, and
descriptions. A transaction starts with ``POST /v3/clusters/{cid}/producers`` with a
``transactional_id``; produces carrying that id add their partitions to it."""
from __future__ import annotations

from flask import Blueprint

from service.api.admin import _cluster
from service.api.http import base_url, body_json, json_response, server, topic_partition_offsets
from service.errors import PAYLOAD_ERROR, RestError
from service.transactions.metadata import TransactionMetadata

bp = Blueprint("transactions", __name__, url_prefix="/v3")

INT64_MAX = 2**63 - 1


def _object() -> dict:
    body = body_json()
    if not isinstance(body, dict):
        raise RestError(422, "Payload error. The body must be a JSON object.", PAYLOAD_ERROR)
    return body


def _int(body: dict, name: str, maximum: int, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise RestError(422, f"Payload error. {name} must be an integer between 0 and {maximum}.", PAYLOAD_ERROR)
    return value


def _producer(body: dict, allowed: set[str]) -> tuple[int, int]:
    unknown = set(body) - allowed
    if unknown:
        raise RestError(422, f"Payload error. Unrecognized field(s): {', '.join(sorted(unknown))}.", PAYLOAD_ERROR)
    return _int(body, "producer_id", INT64_MAX), _int(body, "producer_epoch", 32767)


def transaction_json(cid: str, meta: TransactionMetadata) -> dict:
    return {
        "kind": "KafkaTransaction",
        "metadata": {"self": f"{base_url()}/v3/clusters/{cid}/transactions/{meta.transactional_id}",
                     "resource_name": f"crn:///kafka={cid}/transaction={meta.transactional_id}"},
        "cluster_id": cid, "transactional_id": meta.transactional_id, "producer_id": meta.producer_id,
        "producer_epoch": meta.producer_epoch, "state": meta.state.value, "timeout_ms": meta.timeout_ms,
        "start_time_ms": meta.start_ms, "last_update_ms": meta.last_update_ms,
        "partitions": [{"topic_name": t, "partition_id": p} for t, p in sorted(meta.partitions)],
    }


@bp.post("/clusters/<cid>/transactions/<transactional_id>/offsets")
def txn_offset_commit(cid: str, transactional_id: str):
    """Add consumer offsets to the transaction (AddOffsetsToTxn + TxnOffsetCommit): they become
    the group's committed offsets only if the transaction commits. Offsets are the next to read.

    Body: ``{"producer_id", "producer_epoch", "consumer_group_id", "offsets": [{"topic_name",
    "partition_id", "offset", "metadata"}], "generation_id", "member_id"}``.
    """
    _cluster(cid)
    body = _object()
    pid, epoch = _producer(body, {"producer_id", "producer_epoch", "consumer_group_id", "offsets",
                                  "generation_id", "member_id"})
    group_id = body.get("consumer_group_id")
    if not isinstance(group_id, str) or not group_id or len(group_id) > 255:
        raise RestError(422, "Payload error. consumer_group_id must be a non-empty string.", PAYLOAD_ERROR)
    parsed = topic_partition_offsets(body.get("offsets"), PAYLOAD_ERROR)
    generation = _int(body, "generation_id", 2**31 - 1, required=False)
    member_id = body.get("member_id")
    if member_id is not None and not isinstance(member_id, str):
        raise RestError(422, "Payload error. member_id must be a string.", PAYLOAD_ERROR)
    server().txn_offset_commit(transactional_id, pid, epoch, group_id, parsed, generation, member_id)
    return "", 204


def _end(cid: str, transactional_id: str, commit: bool):
    _cluster(cid)
    pid, epoch = _producer(_object(), {"producer_id", "producer_epoch"})
    result = server().transaction_coordinator.handle_end_transaction(transactional_id, pid, epoch, commit)
    return json_response({"transactional_id": result.transactional_id, "producer_id": result.producer_id,
                          "producer_epoch": result.producer_epoch, "state": result.state.value,
                          "result": "commit" if commit else "abort"})


@bp.post("/clusters/<cid>/transactions/<transactional_id>:commit")
def commit_transaction(cid: str, transactional_id: str):
    """Commit (EndTxn): ``{"producer_id", "producer_epoch"}``. Answers with the epoch to use for
    the next transaction (every end of a transaction bumps it) and the state reached:
    ``CompleteCommit``, or ``PrepareCommit`` when a marker could not be written yet (the commit
    is decided and will complete)."""
    return _end(cid, transactional_id, True)


@bp.post("/clusters/<cid>/transactions/<transactional_id>:abort")
def abort_transaction(cid: str, transactional_id: str):
    """Abort (EndTxn): ``{"producer_id", "producer_epoch"}``; as commit, the other way."""
    return _end(cid, transactional_id, False)


@bp.get("/clusters/<cid>/transactions")
def list_transactions(cid: str):
    """Every transactional id with its producer, epoch, state, partitions and timeout."""
    _cluster(cid)
    data = [transaction_json(cid, m) for m in server().transaction_coordinator.list_transactions()]
    return json_response({"kind": "KafkaTransactionList",
                          "metadata": {"self": f"{base_url()}/v3/clusters/{cid}/transactions", "next": None},
                          "data": data})


@bp.get("/clusters/<cid>/transactions/<transactional_id>")
def get_transaction(cid: str, transactional_id: str):
    """One transactional id."""
    _cluster(cid)
    return json_response(transaction_json(cid, server().transaction_coordinator.describe(transactional_id)))
