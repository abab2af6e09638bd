"""Crash at every named point of the commit and abort paths, in one process (the fast twin of
test_crash_points.py; reliability.md R5, kafka-semantics.md 3.39, ARCHITECTURE.md section 3).

A ``Crash`` raised at the point stands for a kill -9 there (every point sits between two
single-file SQLite transactions); ``restart`` then builds a new server on the same files,
which runs start-up recovery. After each crash: the transaction is complete with the decision
that was made (a prepared decision is rolled forward, never reversed), every partition shows
all of its records or none, every replica holds exactly one marker of the new epoch, the
group offsets moved iff it committed, and a retried EndTxn reports the outcome.
"""
from __future__ import annotations

import pytest

from service.server import DlogServer

from .conftest import Crash, TxnApi, assert_error, assert_ok

T = "t"
GROUP = "copier"
POINTS = [("txn.after_prepare", 1), ("txn.after_marker", 1), ("txn.after_marker", 2), ("txn.after_marker", 3),
          ("txn.before_complete", 1), ("txn.after_complete", 1)]
CASES = [(point, nth, commit) for point, nth in POINTS for commit in (True, False)]


def _open_transaction(txn):
    """A transaction over the three partitions of ``t``, with offsets, after one committed
    transaction (so the group has offsets to keep or replace)."""
    txn.server.controller.create_topic("in", 2, 1)
    p = txn.producer()
    p.send_ok(T, 0, "base")
    assert_ok(p.send_offsets(GROUP, {("in", 0): 10}))
    p.commit_ok()
    for q in range(3):
        p.send_ok(T, q, f"x{q}", f"y{q}")
    txn.plain(T, 1, "plain")
    assert_ok(p.send_offsets(GROUP, {("in", 0): 20, ("in", 1): 5}))
    return p


def check_outcome(api: TxnApi, server: DlogServer, p, commit: bool) -> None:
    server.replica_manager.replicate_all()
    meta = api.describe()
    assert meta["state"] == ("CompleteCommit" if commit else "CompleteAbort")
    assert meta["producer_epoch"] == p.epoch + 1 and meta["partitions"] == []
    for q in range(3):
        got = api.values(T, q)
        mine = [f"x{q}", f"y{q}"]
        expected = (["base"] if q == 0 else []) + (mine if commit else []) + (["plain"] if q == 1 else [])
        assert got == expected, (q, got)
        for b in server.controller.topic(T).partition(q).replicas:
            ours = [(k, e) for _o, k, e in api.markers(T, q, b) if e == p.epoch + 1]
            assert ours == [("COMMIT" if commit else "ABORT", p.epoch + 1)], (q, b)
        o = api.offsets(T, q)
        assert o.last_stable_offset == o.high_watermark == o.log_end_offset
    expected_offsets = {("in", 0): 20, ("in", 1): 5} if commit else {("in", 0): 10}
    assert api.committed(GROUP, stable=True) == expected_offsets
    # The retried EndTxn reports the outcome; the other decision is refused.
    body = assert_ok(api.end("tx", p.pid, p.epoch, commit))
    assert body["state"] == meta["state"] and body["producer_epoch"] == p.epoch + 1
    assert_error(api.end("tx", p.pid, p.epoch, not commit), "INVALID_TXN_STATE", 409)
    # The producer carries on with the epoch it was given.
    p.api = api
    p.epoch, p.seq = p.epoch + 1, {}
    p.send_ok(T, 2, "next")
    p.commit_ok()
    assert api.values(T, 2)[-1] == "next"


@pytest.mark.parametrize("point, nth, commit", CASES, ids=[f"{'commit' if c else 'abort'}-{p}-{n}"
                                                          for p, n, c in CASES])
def test_crash_during_end_txn_then_restart(txn, topic, server, crash_at, restart, point, nth, commit):
    p = _open_transaction(txn)
    crash_at(point, nth)
    with pytest.raises(Crash):
        p.end(commit)
    prepared_or_done = txn.state()
    assert prepared_or_done in (("PrepareCommit", "CompleteCommit") if commit else ("PrepareAbort", "CompleteAbort"))
    assert prepared_or_done.startswith("Complete") == (point == "txn.after_complete")
    server2, api = restart(server)
    check_outcome(api, server2, p, commit)


@pytest.mark.parametrize("commit", [True, False])
def test_crash_during_recovery_then_restart_again(txn, topic, server, crash_at, commit):
    """The first restart dies too, in the middle of start-up recovery (after one marker): the
    second restart finishes the same decision; markers are still written once."""
    from service.api import create_app

    p = _open_transaction(txn)
    crash_at("txn.after_marker", 2)
    with pytest.raises(Crash):
        p.end(commit)
    server.shut_down()
    crash_at("txn.after_marker", 1)
    first = DlogServer(server.config, server.clock)
    try:
        with pytest.raises(Crash):
            first.start_up(migrate=False, background=False)
    finally:
        first.shut_down()
    second = DlogServer(server.config, server.clock)
    second.start_up(migrate=False, background=False)
    try:
        check_outcome(TxnApi(create_app(server=second).test_client(), second), second, p, commit)
    finally:
        second.shut_down()


def test_crash_after_a_transactional_append_then_retry(txn, topic, server, crash_at, restart):
    """produce.after_append: one request writes three partitions; the process dies after the
    first append, before answering. The client retries the same request (same epoch and
    sequences): the first partition answers the original offsets as a duplicate, the others
    are appended, and the committed transaction holds every record exactly once."""
    p = _open_transaction(txn)
    p.commit_ok()
    before = [txn.values(T, q) for q in range(3)]
    records = [r for q in range(3) for r in p.records(T, q, [f"r{q}"])]
    crash_at("produce.after_append")
    with pytest.raises(Crash):
        txn.produce(T, records)
    server2, api = restart(server)
    assert api.state() == "Ongoing"
    reports = api.reports(api.produce(T, records))
    assert [r.get("duplicate", False) for r in reports].count(True) == 1
    p.api = api
    p.commit_ok()
    assert [api.values(T, q) for q in range(3)] == [before[q] + [f"r{q}"] for q in range(3)]
    assert sorted(v for q in range(3) for v in api.values(T, q, "read_uncommitted")).count("r0") == 1


def test_crash_after_a_transactional_append_then_reinit(txn, topic, server, crash_at, restart):
    """produce.after_append, and the client gives up on the instance: a new InitProducerId
    aborts the open transaction (its half-written request included) and fences the old epoch."""
    p = _open_transaction(txn)
    records = [r for q in range(3) for r in p.records(T, q, [f"r{q}"])]
    crash_at("produce.after_append")
    with pytest.raises(Crash):
        txn.produce(T, records)
    server2, api = restart(server)
    fresh = api.producer()
    assert fresh.epoch == p.epoch + 2
    assert api.state() == "Empty"
    for q in range(3):
        assert api.values(T, q) == (["base"] if q == 0 else []) + (["plain"] if q == 1 else [])
    assert api.committed(GROUP, stable=True) == {("in", 0): 10}
    assert_error(api.produce(T, records), "INVALID_PRODUCER_EPOCH", 409)
