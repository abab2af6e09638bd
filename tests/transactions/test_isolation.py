"""What readers see (kafka-semantics.md 3.H): read_committed versus read_uncommitted, the last
stable offset, and transaction markers, through the stateless read and v2 consumer instances.

Checked: read_committed returns exactly the committed and plain records below the LSO, in
offset order, from any start offset and in pages of any size, also when one producer has
several aborted and committed transactions in one fetch range (kafka4beam/brod#659);
read_uncommitted returns aborted and open records too (redpanda#6630) but never a marker;
no reader ever gets a marker or stops in front of one; the LSO holds back plain records
behind an open transaction and never passes a marker the HW has not passed (3.28-3.31).
"""
from __future__ import annotations

import random

import pytest

from .conftest import assert_ok

T = "t"


def _scripted_history(txn) -> tuple[list[tuple[int, str, str]], int]:
    """One partition written by two transactional producers (P, Q) with interleaved
    transactions, several of P's aborted and committed back to back, plus plain records.
    Returns [(offset, value, fate)] with fate "committed", "aborted" or "plain", and the LEO."""
    P = txn.producer("P")
    Q = txn.producer("Q")
    fates: dict[str, str] = {}

    def send(prod, *values):
        for v, o in zip(values, prod.send_ok(T, 0, *values)):
            fates[v] = o

    outcome: dict[str, str] = {}
    script = [
        (P, ["p1a", "p1b"], "commit"), (P, ["p2a"], "abort"), (P, ["p3a", "p3b", "p3c"], "commit"),
        (P, ["p4a"], "abort"), (P, ["p5a"], "abort"), (P, ["p6a"], "commit"),
    ]
    # Q's transaction spans several of P's, and plain records fall in between.
    send(Q, "q1a")
    for i, (prod, values, end) in enumerate(script):
        send(prod, *values)
        if i == 1:
            for v, o in zip(["plain1"], txn.plain(T, 0, "plain1")):
                fates[v] = o
                outcome[v] = "plain"
        if i == 2:
            send(Q, "q1b")
        for v in values:
            outcome[v] = "committed" if end == "commit" else "aborted"
        (prod.commit_ok if end == "commit" else prod.abort_ok)()
    send(Q, "q1c")
    Q.abort_ok()
    for v in ("q1a", "q1b", "q1c"):
        outcome[v] = "aborted"
    send(Q, "q2a")
    Q.commit_ok()
    outcome["q2a"] = "committed"
    for v, o in zip(["plain2"], txn.plain(T, 0, "plain2")):
        fates[v] = o
        outcome[v] = "plain"
    history = sorted((o, v, outcome[v]) for v, o in fates.items())
    return history, txn.offsets(T, 0).log_end_offset


def test_several_transactions_of_one_producer_in_one_fetch_range(txn, topic):
    """brod#659 and 3.34: every start offset, whole and one-record pages."""
    history, leo = _scripted_history(txn)
    assert txn.lso(T, 0) == txn.offsets(T, 0).high_watermark == leo
    markers = {o for o, _k, _e in txn.markers(T, 0)}
    assert len(markers) == 8 and markers.isdisjoint(o for o, _v, _f in history)
    assert len(history) + len(markers) == leo  # the raw log is dense: data and markers only
    for start in range(leo + 1):
        committed = [(o, v) for o, v, fate in history if o >= start and fate != "aborted"]
        everything = [(o, v) for o, v, _fate in history if o >= start]
        assert txn.read(T, 0, "read_committed", start) == committed, start
        assert txn.read(T, 0, "read_uncommitted", start) == everything, start
        if start % 3 == 0:
            assert txn.read(T, 0, "read_committed", start, max_bytes=1) == committed, start
            assert txn.read(T, 0, "read_uncommitted", start, max_bytes=1) == everything, start
        # Whatever the start, a reader that read everything stands at the end of the log.
        assert txn.next_offset(T, 0, "read_committed", start) == leo
        assert txn.next_offset(T, 0, "read_uncommitted", start) == leo


def test_random_interleavings_match_a_model(txn, topic):
    """A seeded random mix of three transactional producers and plain writes on one
    partition: read_committed equals the model's committed-or-plain records, read_uncommitted
    equals all data records, from every start offset."""
    rng = random.Random(659)
    producers = [txn.producer(f"P{i}") for i in range(3)]
    open_values: dict[int, list[str]] = {i: [] for i in range(3)}
    fate: dict[str, str] = {}
    where: dict[str, int] = {}
    for step in range(60):
        i = rng.randrange(4)
        if i == 3:
            v = f"plain{step}"
            where[v] = txn.plain(T, 0, v)[0]
            fate[v] = "plain"
            continue
        prod = producers[i]
        if open_values[i] and rng.random() < 0.3:
            commit = rng.random() < 0.5
            (prod.commit_ok if commit else prod.abort_ok)()
            for v in open_values[i]:
                fate[v] = "committed" if commit else "aborted"
            open_values[i] = []
        else:
            v = f"P{i}-{step}"
            where[v] = prod.send_ok(T, 0, v)[0]
            open_values[i].append(v)
    for i, prod in enumerate(producers):
        if open_values[i]:
            prod.abort_ok()
            for v in open_values[i]:
                fate[v] = "aborted"
    leo = txn.offsets(T, 0).log_end_offset
    assert txn.lso(T, 0) == leo
    history = sorted((o, v) for v, o in where.items())
    for start in range(0, leo + 1):
        assert txn.read(T, 0, "read_committed", start) == [(o, v) for o, v in history
                                                            if o >= start and fate[v] != "aborted"], start
        assert txn.read(T, 0, "read_uncommitted", start) == [(o, v) for o, v in history if o >= start], start


def test_lso_holds_back_plain_records_behind_open_transactions(txn, topic):
    """3.29-3.31: with two producers' transactions open, the LSO is the first offset of the
    earlier one; read_committed sees nothing at or above it, even plain records. It moves on
    to the next open transaction when the first ends, and reaches the HW when none is open."""
    txn.plain(T, 0, "before")  # offset 0
    P, Q = txn.producer("P"), txn.producer("Q")
    P.send_ok(T, 0, "p")  # 1
    txn.plain(T, 0, "plain-a")  # 2
    Q.send_ok(T, 0, "q")  # 3
    txn.plain(T, 0, "plain-b")  # 4
    assert txn.lso(T, 0) == 1 and txn.offsets(T, 0).high_watermark == 5
    assert txn.values(T, 0) == ["before"]
    P.commit_ok()  # marker at 5
    assert txn.lso(T, 0) == 3
    assert txn.values(T, 0) == ["before", "p", "plain-a"]
    Q.abort_ok()  # marker at 6
    o = txn.offsets(T, 0)
    assert o.last_stable_offset == o.high_watermark == o.log_end_offset == 7
    assert txn.values(T, 0) == ["before", "p", "plain-a", "plain-b"]
    assert txn.values(T, 0, "read_uncommitted") == ["before", "p", "plain-a", "q", "plain-b"]


def test_reading_from_inside_an_aborted_transaction(txn, topic):
    """A read_committed read that starts inside an aborted transaction (or on its marker)
    returns what follows and moves past the marker; it never stalls."""
    p = txn.producer()
    p.send_ok(T, 0, "a0", "a1", "a2")
    p.abort_ok()  # marker at 3
    txn.plain(T, 0, "after")  # 4
    for start in range(5):
        assert txn.read(T, 0, "read_committed", start) == [(4, "after")]
        assert txn.next_offset(T, 0, "read_committed", start) == 5


def test_lso_never_passes_a_marker_the_hw_has_not_passed(txn, topic, server, clock):
    """3.28/3.40: a completed transaction whose marker is at or above the HW still holds the
    LSO at its first offset. Here both followers are stopped (still in the ISR), so the COMMIT
    marker is appended on the leader but not replicated: EndTxn answers PrepareCommit, nothing
    is visible; once the ISR shrinks and the HW passes the marker, the records appear."""
    p = txn.producer()
    p.send_ok(T, 0, "r0", "r1")
    state = server.controller.topic(T).partition(0)
    followers = [b for b in state.replicas if b != state.leader]
    server.controller.stop_broker(followers[0])
    server.controller.stop_broker(followers[1])
    body = assert_ok(p.commit())
    assert body["state"] == "PrepareCommit"
    raw = txn.raw(T, 0)
    assert [r.offset for r in raw if r.is_control] == [2]
    o = txn.offsets(T, 0)
    assert o.log_end_offset == 3 and o.high_watermark == 2 and o.last_stable_offset == 0
    assert txn.values(T, 0) == []
    # One follower back: the HW passes the marker, the recovery duty completes the commit.
    server.controller.start_broker(followers[0])
    clock.advance(server.config.replica_lag_time_max_ms + 1)
    server.replica_manager.maybe_shrink_isr()
    server.replica_manager.replicate_all()
    assert server.transaction_coordinator.complete_prepared_transactions() == 1
    o = txn.offsets(T, 0)
    assert o.last_stable_offset == o.high_watermark == 3
    assert txn.values(T, 0) == ["r0", "r1"]


@pytest.mark.parametrize("level", ["read_committed", "read_uncommitted"])
def test_consumer_instances_never_get_markers_and_pass_aborted_transactions(txn, topic, client, level):
    """A v2 consumer instance polling a partition whose first records are an aborted
    transaction: read_committed gets only the committed and plain records, read_uncommitted
    also the aborted ones, neither ever a marker, and both positions end past the last
    marker."""
    p = txn.producer()
    p.send_ok(T, 0, "aborted-0", "aborted-1")
    p.abort_ok()  # 2
    p.send_ok(T, 0, "committed-3")
    p.commit_ok()  # 4
    txn.plain(T, 0, "plain-5")
    p.send_ok(T, 0, "aborted-6")
    p.abort_ok()  # 7
    assert client.post("/consumers/g", json={"name": "c", "format": "json", "isolation.level": level,
                                             "auto.offset.reset": "earliest",
                                             "auto.commit.enable": "false"}).status_code == 200
    assert client.post("/consumers/g/instances/c/assignments",
                       json={"partitions": [{"topic": T, "partition": 0}]}).status_code == 204
    got = []
    for _ in range(10):
        resp = client.get("/consumers/g/instances/c/records?timeout=0",
                          headers={"Accept": "application/vnd.kafka.json.v2+json"})
        got += [(r["offset"], r["value"]) for r in assert_ok(resp)]
    expected = [(3, "committed-3"), (5, "plain-5")]
    if level == "read_uncommitted":
        expected = sorted(expected + [(0, "aborted-0"), (1, "aborted-1"), (6, "aborted-6")])
    assert got == expected
    positions = server_positions(txn, "g", "c")
    assert positions == {(T, 0): 8}


def server_positions(txn, group: str, instance: str) -> dict:
    from sqlalchemy import select

    from service import schema

    a = schema.member_assignment.c
    with txn.server.db.read(txn.server.db.controller) as conn:
        return {(r.topic_name, r.partition_id): r.position for r in conn.execute(
            select(schema.member_assignment).where(a.group_id == group, a.instance_id == instance))}


def test_full_truncation_forgets_the_transaction_index(txn, topic, server):
    """A replica restarted empty (Kafka 1.37, ``truncate_fully_and_start_at``) keeps no
    aborted-transaction rows or producer state of the records it dropped."""
    from sqlalchemy import func, select

    from service import log as unified_log
    from service import schema

    p = txn.producer()
    p.send_ok(T, 0, "gone")
    p.abort_ok()
    state = server.controller.topic(T).partition(0)
    follower = next(b for b in state.replicas if b != state.leader)
    db = server.db
    idx, ps = schema.transaction_index.c, schema.producer_state.c
    with db.write(db.broker(follower)) as conn:
        log_state = unified_log.load(conn, state.topic_id, 0)
        count = select(func.count()).select_from(schema.transaction_index).where(idx.log_id == log_state.log_id)
        assert conn.execute(count).scalar_one() == 1
        unified_log.truncate_fully_and_start_at(conn, log_state, 2)
        assert conn.execute(count).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(schema.producer_state)
                            .where(ps.log_id == log_state.log_id)).scalar_one() == 0
