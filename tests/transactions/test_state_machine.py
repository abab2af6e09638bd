"""The coordinator's state machine (kafka-semantics.md 3.B) and InitProducerId (3.C).

Only Kafka's transitions are legal (3.5); an illegal one is refused with INVALID_TXN_STATE
and never persisted. PrepareEpochFence exists only inside one write transaction: it is never
stored (3.5, last row). InitProducerId validates its input (3.8), starts at epoch 0 (3.9),
bumps and fences (3.11, 3.12), rolls a prepared transaction forward before bumping (3.39), and
moves to a fresh producer id when the epoch is exhausted.
"""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import update

from service import schema
from service.errors import Errors, KafkaError
from service.transactions import state_manager
from service.transactions.metadata import MAX_PRODUCER_EPOCH, TransactionMetadata, TransactionState

from .conftest import Crash, assert_error, assert_ok

S = TransactionState
T = "t"

# Kafka's TransactionMetadata: target state -> the states it may be entered from.
KAFKA_LEGAL = {
    S.EMPTY: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.ONGOING: {S.EMPTY, S.ONGOING, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_COMMIT: {S.ONGOING},
    S.PREPARE_ABORT: {S.ONGOING, S.PREPARE_EPOCH_FENCE},
    S.COMPLETE_COMMIT: {S.PREPARE_COMMIT},
    S.COMPLETE_ABORT: {S.PREPARE_ABORT},
    S.DEAD: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_EPOCH_FENCE: {S.ONGOING},
}
PAIRS = list(itertools.product(S, S))


def _meta(state: TransactionState, partitions=frozenset({("t", 0)})) -> TransactionMetadata:
    return TransactionMetadata("tx", 7, 3, 2, 60000, state, 1000 if state is not S.EMPTY else None, 1000,
                               partitions if state not in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
                               else frozenset())


@pytest.mark.parametrize("source, target", PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_only_kafkas_transitions_are_legal(source, target):
    meta = _meta(source)
    if source in KAFKA_LEGAL[target]:
        after = meta.transition_to(target, 2000)
        assert after.state is target and after.last_update_ms == 2000
    else:
        with pytest.raises(KafkaError) as info:
            meta.transition_to(target, 2000)
        assert info.value.error is Errors.INVALID_TXN_STATE


def test_transition_rules_for_partitions_and_start_time():
    """3.7: Complete* and Empty clear the partition set; entering Ongoing from a non-Ongoing
    state sets the start time, staying Ongoing keeps it; Prepare* keeps the partitions."""
    ongoing = _meta(S.ONGOING)
    more = ongoing.transition_to(S.ONGOING, 5000, partitions=ongoing.partitions | {("t", 1)})
    assert more.start_ms == ongoing.start_ms and more.partitions == {("t", 0), ("t", 1)}
    prepared = more.transition_to(S.PREPARE_COMMIT, 6000)
    assert prepared.partitions == more.partitions and prepared.start_ms == more.start_ms
    done = prepared.transition_to(S.COMPLETE_COMMIT, 7000)
    assert done.partitions == frozenset() and done.start_ms is None
    again = done.transition_to(S.ONGOING, 8000)
    assert again.start_ms == 8000
    assert done.transition_to(S.EMPTY, 9000).partitions == frozenset()


def test_every_stored_transition_is_legal(txn, topic, server, clock, monkeypatch):
    """Every state a run through all paths (commit, abort, fencing, timeout, re-init) stores is
    reached by a legal transition from the stored state before it, and PrepareEpochFence is
    never stored."""
    seen: list[tuple[TransactionState | None, TransactionState]] = []
    real_store = state_manager.store

    def recording_store(conn, meta, previous):
        seen.append((previous.state if previous is not None else None, meta.state))
        return real_store(conn, meta, previous)

    monkeypatch.setattr(state_manager, "store", recording_store)
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "a")
    assert_ok(p.send_offsets("g", {(T, 1): 1}))
    p.commit_ok()
    p.send_ok(T, 0, "b")
    p.abort_ok()
    p.send_ok(T, 0, "c")
    txn.producer("tx", timeout_ms=1000)  # fences the Ongoing transaction
    q = txn.producer("tx", timeout_ms=1000)
    q.send_ok(T, 1, "d")
    clock.advance(1001)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 1
    assert seen, "nothing stored"
    for previous, stored in seen:
        assert stored is not S.PREPARE_EPOCH_FENCE
        if previous is not None:
            # The fencing abort stores Ongoing -> PrepareAbort through PrepareEpochFence.
            assert previous in KAFKA_LEGAL[stored], (previous, stored)
    stored_states = {s for _p, s in seen}
    assert {S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT, S.PREPARE_ABORT,
            S.COMPLETE_ABORT} <= stored_states


# ---------------------------------------------------------------------------- InitProducerId
@pytest.mark.parametrize("body, error, status", [
    ({"transactional_id": ""}, "INVALID_REQUEST", 400),
    ({"transactional_id": "x" * 256}, "INVALID_REQUEST", 400),
    ({"transactional_id": "tab\there"}, "INVALID_REQUEST", 400),
    ({"transactional_id": 5}, "INVALID_REQUEST", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": 0}, "INVALID_TRANSACTION_TIMEOUT", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": -1}, "INVALID_TRANSACTION_TIMEOUT", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": 900_001}, "INVALID_TRANSACTION_TIMEOUT", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": True}, "INVALID_TRANSACTION_TIMEOUT", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": "60000"}, "INVALID_TRANSACTION_TIMEOUT", 400),
    ({"transactional_id": "tx", "transaction_timeout_ms": 1.5}, "INVALID_TRANSACTION_TIMEOUT", 400),
])
def test_init_producer_id_validation(txn, body, error, status):
    """3.8: an empty (or otherwise unusable) transactional id is INVALID_REQUEST; a timeout
    <= 0, above transaction.max.timeout.ms or not an integer is INVALID_TRANSACTION_TIMEOUT.
    Nothing is created."""
    assert_error(txn.client.post(f"{txn.v3}/producers", json=body), error, status)
    assert txn.server.transaction_coordinator.list_transactions() == []


def test_init_producer_id_rejects_unknown_fields_and_bad_bodies(txn):
    for body in ({"transactional_id": "tx", "enable_idempotence": True}, [1], "tx"):
        resp = txn.client.post(f"{txn.v3}/producers", json=body)
        assert resp.status_code == 422, resp.get_data(as_text=True)
    assert txn.server.transaction_coordinator.list_transactions() == []


def test_init_producer_id_timeouts_at_the_bounds(txn):
    for tid, timeout in (("lo", 1), ("hi", 900_000)):
        assert_ok(txn.init(tid, timeout))
        assert txn.describe(tid)["timeout_ms"] == timeout
    assert_ok(txn.init("default"))
    assert txn.describe("default")["timeout_ms"] == 60_000


def test_init_producer_id_first_call_epoch_zero_then_bumps(txn):
    """3.9, 3.11: a new id starts at epoch 0 in Empty; each InitProducerId bumps the epoch and
    keeps the producer id; without a transactional id every call is a new producer id."""
    first = assert_ok(txn.init("tx"))
    assert first["producer_epoch"] == 0 and first["transactional_id"] == "tx"
    for n in range(1, 4):
        again = assert_ok(txn.init("tx"))
        assert (again["producer_id"], again["producer_epoch"]) == (first["producer_id"], n)
    assert txn.state() == "Empty"
    ids = {assert_ok(txn.init())["producer_id"] for _ in range(5)}
    assert len(ids) == 5 and first["producer_id"] not in ids
    plain = assert_ok(txn.init())
    assert plain["producer_epoch"] == 0 and plain["transactional_id"] is None


def test_init_producer_id_new_timeout_applies(txn):
    assert_ok(txn.init("tx", 5000))
    assert_ok(txn.init("tx", 7000))
    assert txn.describe()["timeout_ms"] == 7000


def test_init_producer_id_rolls_a_prepared_commit_forward(txn, topic, crash_at):
    """3.11/3.39: InitProducerId finds PrepareCommit (the coordinator died after the decision):
    it completes the commit first (never reverses it), then bumps the epoch."""
    p = txn.producer()
    p.send_ok(T, 0, "kept")
    assert_ok(p.send_offsets("g", {(T, 1): 9}))
    crash_at("txn.after_prepare")
    with pytest.raises(Crash):
        p.commit()
    q = txn.producer()
    assert q.pid == p.pid and q.epoch == 2  # 0 -> 1 at PrepareCommit -> 2 at InitProducerId
    assert txn.values(T, 0) == ["kept"]
    assert txn.committed("g", stable=True) == {(T, 1): 9}


def test_epoch_exhaustion_gives_a_new_producer_id(txn, server):
    """3.11: when the epoch reaches 32766 InitProducerId allocates a new producer id at epoch
    0, so the old id's zombies are fenced by id (INVALID_PRODUCER_ID_MAPPING)."""
    first = assert_ok(txn.init("tx"))
    with server.db.write(server.db.controller) as conn:
        conn.execute(update(schema.transaction).where(schema.transaction.c.transactional_id == "tx")
                     .values(producer_epoch=MAX_PRODUCER_EPOCH - 1))
    rotated = assert_ok(txn.init("tx"))
    assert rotated["producer_id"] != first["producer_id"] and rotated["producer_epoch"] == 0
    assert_error(txn.end("tx", first["producer_id"], MAX_PRODUCER_EPOCH - 1, True),
                 "INVALID_PRODUCER_ID_MAPPING", 409)


def test_epoch_exhaustion_at_end_txn_keeps_the_producer_usable(txn, topic, server):
    """KIP-890: every EndTxn bumps the epoch, so a long-lived producer exhausts it after 32767
    transactions without ever calling InitProducerId again. Kafka then rotates to a new
    producer id at epoch 0 in the EndTxn answer, and still recognises a retry of that EndTxn.
    The producer must be able to go on committing with what EndTxn answers."""
    p = txn.producer()
    with server.db.write(server.db.controller) as conn:
        conn.execute(update(schema.transaction).where(schema.transaction.c.transactional_id == "tx")
                     .values(producer_epoch=MAX_PRODUCER_EPOCH - 1))
    p.epoch = MAX_PRODUCER_EPOCH - 1
    for i in range(3):
        last = (p.pid, p.epoch)
        p.send_ok(T, 0, f"v{i}")
        answer = p.commit_ok()
        assert 0 <= answer["producer_epoch"] <= MAX_PRODUCER_EPOCH
        assert assert_ok(txn.end("tx", *last, True))["state"] == "CompleteCommit"
    assert txn.values(T, 0) == ["v0", "v1", "v2"]
