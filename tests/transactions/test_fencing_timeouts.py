"""Fencing (kafka-semantics.md 3.12), transaction timeouts (3.37) and data-partition failover
(3.40), in one process with a MockClock.

An old instance of a transactional producer is refused everywhere once a new instance exists
or its transaction timed out: its produce gets INVALID_PRODUCER_EPOCH, its offsets and EndTxn
PRODUCER_FENCED, and nothing it sends is written. Timeouts count from the transaction's first
partition or offsets (persisted), abort only Ongoing transactions (a prepared commit is never
reversed) and fence the producer. Markers are replicated like acks=all writes, so a leader
failover keeps every transaction's outcome on the new leader.
"""
from __future__ import annotations

import pytest

from .conftest import Crash, assert_error, assert_ok

T = "t"


def _leos(txn) -> list[int]:
    return [txn.offsets(T, p).log_end_offset for p in range(3)]


@pytest.mark.parametrize("zombie_state", ["open", "committed", "aborted", "fresh"])
def test_old_instance_is_fenced_everywhere(txn, topic, zombie_state):
    """Whatever the old instance was doing (an open transaction on all three partitions, a
    finished one, or nothing yet), after a new InitProducerId every call it makes is refused
    and writes nothing; its open transaction is aborted on every partition."""
    a = txn.producer()
    if zombie_state != "fresh":
        for p in range(3):
            a.send_ok(T, p, f"a{p}")
        assert_ok(a.send_offsets("g", {(T, 0): 1}))
    if zombie_state == "committed":
        a.commit_ok()
    elif zombie_state == "aborted":
        a.abort_ok()
    b = txn.producer()
    assert b.epoch > a.epoch
    leos = _leos(txn)
    for p in range(3):
        assert_error(a.send(T, p, "zombie"), "INVALID_PRODUCER_EPOCH", 409)
        # A retry with the sequence it used before, or a new epoch's first sequence: the same.
        assert_error(a.send(T, p, "zombie", seq=0), "INVALID_PRODUCER_EPOCH", 409)
    assert_error(a.send_offsets("g", {(T, 0): 99}), "PRODUCER_FENCED", 409)
    assert_error(a.commit(), "PRODUCER_FENCED", 409)
    assert_error(a.abort(), "PRODUCER_FENCED", 409)
    assert _leos(txn) == leos
    visible = ["a0"] if zombie_state == "committed" else []
    assert txn.values(T, 0) == visible
    assert txn.committed("g", stable=True) == ({(T, 0): 1} if zombie_state == "committed" else {})
    if zombie_state == "open":
        for p in range(3):
            assert [(k, e) for _o, k, e in txn.markers(T, p)] == [("ABORT", a.epoch + 1)]
    # The new instance is unaffected.
    for p in range(3):
        b.send_ok(T, p, f"b{p}")
    b.commit_ok()
    assert txn.values(T, 2) == (["a2"] if zombie_state == "committed" else []) + ["b2"]


def test_zombie_plain_idempotent_write_after_fencing(txn, topic):
    """The fenced producer id writing without its transactional id (plain idempotent) to a
    partition that saw the new epoch gets INVALID_PRODUCER_EPOCH from the partition (3.12)."""
    a = txn.producer()
    a.send_ok(T, 0, "x")
    txn.producer()  # fences: ABORT marker with a newer epoch on partition 0
    records = a.records(T, 0, ["plain-zombie"])
    for r in records:
        del r["transactional_id"]
    assert_error(txn.produce(T, records), "INVALID_PRODUCER_EPOCH", 409)


# ---------------------------------------------------------------------------- timeouts
def test_timeout_counts_from_the_first_write_not_the_last(txn, topic, server, clock):
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "first")
    clock.advance(800)
    p.send_ok(T, 1, "later")  # does not extend the transaction
    clock.advance(200)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 0  # exactly at the limit
    clock.advance(1)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 1
    assert txn.state() == "CompleteAbort"
    assert txn.values(T, 0) == [] and txn.values(T, 1) == []


def test_timeout_of_an_offsets_only_transaction(txn, topic, server, clock):
    p = txn.producer("tx", timeout_ms=1000)
    assert_ok(p.send_offsets("g", {(T, 0): 5}))
    clock.advance(1001)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 1
    assert txn.committed("g", stable=True) == {}
    assert_error(p.commit(), "PRODUCER_FENCED", 409)


def test_idle_and_completed_transactions_never_time_out(txn, topic, server, clock):
    p = txn.producer("tx", timeout_ms=1000)
    q = txn.producer("done", timeout_ms=1000)
    q.send_ok(T, 0, "q")
    q.commit_ok()
    clock.advance(10_000)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 0
    assert txn.state("tx") == "Empty" and txn.state("done") == "CompleteCommit"
    p.send_ok(T, 0, "p")  # a transaction started now has its full timeout
    clock.advance(999)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 0
    p.commit_ok()
    assert txn.values(T, 0) == ["q", "p"]


def test_timeout_never_reverses_a_prepared_commit(txn, topic, server, clock, crash_at):
    """3.39: a transaction in PrepareCommit past its timeout is committed, never aborted."""
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "x")
    crash_at("txn.after_prepare")
    with pytest.raises(Crash):
        p.commit()
    clock.advance(5000)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 0
    assert server.transaction_coordinator.complete_prepared_transactions() == 1
    assert txn.state() == "CompleteCommit" and txn.values(T, 0) == ["x"]


def test_producer_reinitialises_after_a_timeout(txn, topic, server, clock):
    """3.37: the timed-out producer must re-initialise; it then gets epoch old+2 (the abort
    used old+1) and works normally."""
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "lost")
    clock.advance(1001)
    server.transaction_coordinator.abort_timed_out_transactions()
    again = txn.producer("tx", timeout_ms=1000)
    assert again.epoch == p.epoch + 2
    again.send_ok(T, 0, "kept")
    again.commit_ok()
    assert txn.values(T, 0) == ["kept"]


def test_background_duty_aborts_timed_out_transactions(txn, topic, server, clock):
    """The timeout scan is wired as a background duty (run by the lease holder)."""
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "x")
    clock.advance(server.config.transaction_abort_interval_ms + 1001)
    assert server.background.run_once()
    assert txn.state() == "CompleteAbort"


# ---------------------------------------------------------------------------- failover
def _shrink_isr_and_recover(server, clock, rounds: int = 3) -> int:
    """What the background duties do after a broker stopped, ``rounds`` times: once
    replica.lag.time.max.ms passed, a follower that fell behind (a marker it did not copy)
    leaves the ISR, the others catch up, and prepared transactions are completed. A stopped
    follower that was caught up stays in the ISR until a marker leaves it behind, so this can
    take more than one round, as in Kafka. Returns how many transactions completed."""
    completed = 0
    for _ in range(rounds):
        clock.advance(server.config.replica_lag_time_max_ms + 1)
        server.replica_manager.maybe_shrink_isr()
        server.replica_manager.replicate_all()
        completed += server.transaction_coordinator.complete_prepared_transactions()
    return completed


@pytest.mark.parametrize("commit", [True, False])
def test_markers_survive_leader_failover(txn, topic, server, commit):
    """Markers are written like acks=all records: after the commit or abort, stopping a leader
    changes nothing a read_committed reader sees on the new leader; every replica holds the
    same markers."""
    p = txn.producer()
    for q in range(3):
        p.send_ok(T, q, f"v{q}", f"w{q}")
    txn.plain(T, 0, "plain")
    (p.commit_ok if commit else p.abort_ok)()
    before = {q: txn.values(T, q) for q in range(3)}
    for q in range(3):
        replicas = server.controller.topic(T).partition(q).replicas
        assert len({tuple(txn.markers(T, q, b)) for b in replicas}) == 1, q
    old = server.controller.topic(T).partition(0).leader
    server.controller.stop_broker(old)
    assert server.controller.topic(T).partition(0).leader != old
    server.replica_manager.replicate_all()  # the new leader learns its HW from its followers
    after = {q: txn.values(T, q) for q in range(3)}
    assert after == before
    assert after[0] == ((["v0", "w0"] if commit else []) + ["plain"])
    assert txn.values(T, 0, "read_uncommitted") == ["v0", "w0", "plain"]


def test_transaction_outlives_a_leader_failover(txn, topic, server, clock):
    """Records written with acks=all, then a leader stops before the commit: the markers go to
    the new leader. The stopped broker is still in the ISR of the other partitions, so their
    markers wait (EndTxn may answer PrepareCommit) until it leaves the ISR; then the commit
    completes and the whole transaction is visible, and the returning broker gets the same
    markers."""
    p = txn.producer()
    for q in range(3):
        p.send_ok(T, q, f"v{q}")
    old = server.controller.topic(T).partition(1).leader
    server.controller.stop_broker(old)
    p.send_ok(T, 1, "after-failover")
    state = assert_ok(p.commit())["state"]
    if state == "PrepareCommit":
        assert txn.values(T, 1) == [] or txn.values(T, 0) == [] or txn.values(T, 2) == []
        assert _shrink_isr_and_recover(server, clock) == 1
    assert txn.state() == "CompleteCommit"
    assert [txn.values(T, q) for q in range(3)] == [["v0"], ["v1", "after-failover"], ["v2"]]
    server.controller.start_broker(old)
    server.replica_manager.replicate_all()
    for q in range(3):
        assert txn.markers(T, q, old) == txn.markers(T, q)


def test_prepared_commit_rolls_forward_onto_a_new_leader(txn, topic, server, clock, crash_at, restart):
    """The coordinator dies after PrepareCommit, and a partition leader is lost meanwhile:
    recovery writes the markers to the new leader (and, once the stopped broker left the ISR,
    to the partitions it followed); the decision is never reversed."""
    p = txn.producer()
    for q in range(3):
        p.send_ok(T, q, f"v{q}")
    crash_at("txn.after_prepare")
    with pytest.raises(Crash):
        p.commit()
    old = server.controller.topic(T).partition(2).leader
    server.controller.stop_broker(old)
    server2, api = restart(server)
    if api.state() == "PrepareCommit":
        assert _shrink_isr_and_recover(server2, clock) == 1
    assert api.state() == "CompleteCommit"
    assert [api.values(T, q) for q in range(3)] == [["v0"], ["v1"], ["v2"]]
