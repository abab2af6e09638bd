"""kafka-semantics.md section 7, the transaction scenarios 7.16-7.32, in one process over HTTP.

dlog runs Kafka's transactions V2 (KIP-890): every EndTxn bumps the producer epoch, markers
carry the new epoch, and partitions join a transaction implicitly on their first produce.
Where V2 (or dlog's documented choices) answers differently from the V1 text of a scenario,
the test docstring says how and why. 7.26 (exactly-once copier under crashes) is
test_copier.py; 7.20's crash between PrepareCommit and the markers is also run against a real
process in test_crash_points.py.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from service.errors import Errors, KafkaError
from service.producer_state import CONTROL_ABORT, CONTROL_COMMIT

from .conftest import Crash, assert_error, assert_ok

T = "t"


def test_7_16_zombie_producer_fenced(txn, topic):
    """7.16. V2 adaptation: dlog's InitProducerId does the fencing abort itself and answers
    once it is complete, so B's first call already returns epoch old+2 (Kafka answers
    CONCURRENT_TRANSACTIONS first and old+2 on the retry). The ABORT marker carries old+1, as
    in Kafka."""
    a = txn.producer("tx")
    assert a.epoch == 0
    a.send_ok(T, 0, "r1")
    b = txn.producer("tx")
    assert (b.pid, b.epoch) == (a.pid, a.epoch + 2)
    assert txn.markers(T, 0) == [(1, "ABORT", a.epoch + 1)]
    assert txn.describe("tx")["state"] == "Empty"
    # The zombie: its produce to the partition, to a partition it never wrote, its offsets
    # and its EndTxn are all refused, and nothing it sends is written.
    leo = {p: txn.offsets(T, p).log_end_offset for p in range(3)}
    assert_error(a.send(T, 0, "late"), "INVALID_PRODUCER_EPOCH", 409)
    assert_error(a.send(T, 1, "late"), "INVALID_PRODUCER_EPOCH", 409)
    assert_error(a.send_offsets("g", {(T, 0): 1}), "PRODUCER_FENCED", 409)
    assert_error(a.commit(), "PRODUCER_FENCED", 409)
    assert_error(a.abort(), "PRODUCER_FENCED", 409)
    assert {p: txn.offsets(T, p).log_end_offset for p in range(3)} == leo
    assert txn.committed("g") == {}
    assert txn.values(T, 0) == []
    assert txn.values(T, 0, "read_uncommitted") == ["r1"]
    # B works normally.
    b.send_ok(T, 0, "b1")
    b.commit_ok()
    assert txn.values(T, 0) == ["b1"]


def test_7_17_abort_hidden_from_read_committed(txn, topic):
    """7.17: the ABORT marker takes offset 2; LSO = HW = 3; read_committed returns nothing,
    read_uncommitted returns r1 and r2, never the marker; both positions end at 3."""
    p = txn.producer()
    assert p.send_ok(T, 0, "r1", "r2") == [0, 1]
    p.abort_ok()
    assert [(o, kind) for o, kind, _e in txn.markers(T, 0)] == [(2, "ABORT")]
    o = txn.offsets(T, 0)
    assert (o.last_stable_offset, o.high_watermark, o.log_end_offset) == (3, 3, 3)
    assert txn.read(T, 0, "read_committed") == []
    assert txn.read(T, 0, "read_uncommitted") == [(0, "r1"), (1, "r2")]
    assert txn.next_offset(T, 0, "read_committed") == 3
    assert txn.next_offset(T, 0, "read_uncommitted") == 3


def test_7_18_open_transaction_blocks_read_committed(txn, topic, client):
    """7.18: an open transaction holds the LSO at its first offset, hiding plain records
    written after it too; ListOffsets(latest, read_committed) is the LSO (the v3 partition's
    ``last_stable_offset`` and a read_committed consumer's seek to the end)."""
    p = txn.producer()
    assert p.send_ok(T, 0, "r1") == [0]
    assert txn.plain(T, 0, "q1") == [1]
    assert txn.read(T, 0, "read_uncommitted") == [(0, "r1"), (1, "q1")]
    assert txn.read(T, 0, "read_committed") == []
    assert txn.lso(T, 0) == 0 and txn.offsets(T, 0).high_watermark == 2
    part = assert_ok(client.get(f"{txn.v3}/topics/{T}/partitions/0"))
    assert part["last_stable_offset"] == 0 and part["high_watermark"] == 2
    # A read_committed consumer seeking to the end stands at the LSO.
    assert client.post("/consumers/g", json={"name": "c", "isolation.level": "read_committed",
                                             "format": "json"}).status_code == 200
    assert client.post("/consumers/g/instances/c/assignments",
                       json={"partitions": [{"topic": T, "partition": 0}]}).status_code == 204
    assert client.post("/consumers/g/instances/c/positions/end",
                       json={"partitions": [{"topic": T, "partition": 0}]}).status_code == 204
    assert _position(txn, "g", "c") == 0  # the LSO, not the HW (2)
    p.commit_ok()
    assert txn.markers(T, 0)[0][:2] == (2, "COMMIT")
    assert txn.read(T, 0, "read_committed") == [(0, "r1"), (1, "q1")]
    assert txn.lso(T, 0) == 3


def _position(txn, group: str, instance: str) -> int | None:
    from service import schema

    a = schema.member_assignment.c
    with txn.server.db.read(txn.server.db.controller) as conn:
        return conn.execute(select(a.position).where(a.group_id == group, a.instance_id == instance)).scalar()


def test_7_19_commit_answers_before_a_delayed_marker(txn, server):
    """7.19: the marker to one partition cannot be written (its only broker is stopped).
    dlog answers EndTxn once the decision is durable, with ``state: PrepareCommit`` and the
    next epoch; the partition whose marker landed is visible, the other is not; the next
    transaction of the id gets CONCURRENT_TRANSACTIONS until the commit completes (by the
    recovery duty once the broker is back), then everything is visible."""
    controller = server.controller
    controller.create_topic("fast", 2, 2, replicas_assignments={0: [0, 1], 1: [1, 0]})
    controller.create_topic("z-delayed", 1, 1, replicas_assignments={0: [2]})
    p = txn.producer()
    p.send_ok("fast", 0, "a")
    p.send_ok("z-delayed", 0, "b")
    controller.stop_broker(2)
    body = assert_ok(p.commit())
    assert body["state"] == "PrepareCommit" and body["producer_epoch"] == 1
    assert txn.values("fast", 0) == ["a"]
    assert txn.state() == "PrepareCommit"
    # The next transaction waits; so does a new instance of the producer.
    assert_error(p.send("fast", 1, "next"), "CONCURRENT_TRANSACTIONS", 503)
    assert_error(txn.init("tx"), "CONCURRENT_TRANSACTIONS", 503)
    # A retry of the commit reports the decision again (Kafka: CONCURRENT_TRANSACTIONS).
    assert assert_ok(p.commit(epoch=0))["state"] == "PrepareCommit"
    assert server.transaction_coordinator.complete_prepared_transactions() == 0
    controller.start_broker(2)
    assert server.transaction_coordinator.complete_prepared_transactions() == 1
    assert txn.state() == "CompleteCommit"
    assert txn.values("z-delayed", 0) == ["b"]
    assert assert_ok(p.commit(epoch=0))["state"] == "CompleteCommit"
    p.send_ok("fast", 1, "next")
    p.commit_ok()
    assert txn.values("fast", 1) == ["next"]


@pytest.mark.parametrize("restart_first", [True, False])
def test_7_20_crash_after_prepare_commit_rolls_forward(txn, topic, server, crash_at, restart, restart_first):
    """7.20: the coordinator dies right after PrepareCommit is durable. Restarted, start-up
    recovery writes the COMMIT markers and CompleteCommit; a retried commit succeeds and an
    abort gets INVALID_TXN_STATE. Without a restart, dlog's retried commit drives the prepared
    commit to completion and reports it (Kafka answers CONCURRENT_TRANSACTIONS while the state
    is PrepareCommit)."""
    p = txn.producer()
    p.send_ok(T, 0, "x0")
    p.send_ok(T, 1, "x1")
    assert_ok(p.send_offsets("g", {(T, 2): 7}))
    crash_at("txn.after_prepare")
    with pytest.raises(Crash):
        p.commit()
    assert txn.state() == "PrepareCommit"
    assert txn.markers(T, 0) == [] and txn.markers(T, 1) == []
    api = txn
    if restart_first:
        _server, api = restart(server)
        assert api.state() == "CompleteCommit"
    body = assert_ok(api.end("tx", p.pid, 0, True))
    assert body["state"] == "CompleteCommit" and body["producer_epoch"] == 1
    assert_error(api.end("tx", p.pid, 0, False), "INVALID_TXN_STATE", 409)
    assert api.values(T, 0) == ["x0"] and api.values(T, 1) == ["x1"]
    assert api.committed("g", stable=True) == {(T, 2): 7}


def test_7_21_crash_before_prepare_times_out_to_abort(txn, topic, server, clock, restart):
    """7.21: the transaction is Ongoing when coordinator and producer die. Its start time is
    persisted, so after the restart the timeout still counts from the first write: the
    coordinator fences (epoch+1), writes ABORT markers and reaches CompleteAbort."""
    p = txn.producer("tx", timeout_ms=10_000)
    p.send_ok(T, 0, "doomed")
    p.send_ok(T, 1, "doomed")
    assert_ok(p.send_offsets("g", {(T, 2): 3}))
    clock.advance(6_000)
    server2, api = restart(server)
    assert api.state() == "Ongoing"
    assert server2.transaction_coordinator.abort_timed_out_transactions() == 0
    clock.advance(4_500)
    assert server2.transaction_coordinator.abort_timed_out_transactions() == 1
    meta = api.describe()
    assert meta["state"] == "CompleteAbort" and meta["producer_epoch"] == p.epoch + 1
    for partition in (0, 1):
        assert [(k, e) for _o, k, e in api.markers(T, partition)] == [("ABORT", p.epoch + 1)]
        assert api.values(T, partition) == []
        o = api.offsets(T, partition)
        assert o.last_stable_offset == o.high_watermark == o.log_end_offset == 2
    assert api.committed("g", stable=True) == {}
    assert_error(api.end("tx", p.pid, p.epoch, True), "PRODUCER_FENCED", 409)


# 7.22 (the EndTxn state table) is test_end_txn.py.


def test_7_23_transactional_write_to_a_partition_not_in_the_transaction(txn, topic):
    """7.23, V2 adaptation: a transactional produce adds its partition itself (KIP-890 part 2),
    so a partition can never hold transactional data its transaction does not know about
    (no hanging transaction). What remains of verification is checked: the partition is in
    the transaction before the data is appended, and a produce under a transactional id that
    does not own the producer id, or an unknown id, is refused with
    INVALID_PRODUCER_ID_MAPPING and changes neither LEO nor LSO."""
    p = txn.producer("tx")
    p.send_ok(T, 0, "a")
    assert [(q["topic_name"], q["partition_id"]) for q in txn.describe()["partitions"]] == [(T, 0)]
    p.send_ok(T, 2, "b")
    assert [q["partition_id"] for q in txn.describe()["partitions"]] == [0, 2]
    other = txn.producer("other")
    before = txn.offsets(T, 1)
    records = p.records(T, 1, ["bad"])
    for r in records:
        r["transactional_id"] = "other"
    assert_error(txn.produce(T, records), "INVALID_PRODUCER_ID_MAPPING", 409)
    for r in records:
        r["transactional_id"] = "never-initialised"
    assert_error(txn.produce(T, records), "INVALID_PRODUCER_ID_MAPPING", 409)
    assert txn.offsets(T, 1) == before
    assert txn.describe("other")["partitions"] == [] and other.epoch == 0


def test_7_24_plain_write_of_a_producer_with_an_open_transaction(txn, topic):
    """7.24: a non-transactional batch of a producer id with an open transaction on the
    partition gets INVALID_TXN_STATE and nothing is written."""
    p = txn.producer()
    p.send_ok(T, 0, "in-txn")
    plain = p.records(T, 0, ["plain"])
    for r in plain:
        del r["transactional_id"]
    leo = txn.offsets(T, 0).log_end_offset
    assert_error(txn.produce(T, plain), "INVALID_TXN_STATE", 409)
    assert txn.offsets(T, 0).log_end_offset == leo
    p.commit_ok()
    assert txn.values(T, 0) == ["in-txn"]


@pytest.mark.parametrize("commit", [True, False])
def test_7_25_transactional_offsets_visible_only_on_commit(txn, topic, client, commit):
    """7.25: committed offset 5; a transaction sends 10. Without requireStable the answer is
    5, with it UNSTABLE_OFFSET_COMMIT (also through a read_committed v2 consumer instance,
    503 and retriable); after the commit both say 10, after an abort both say 5."""
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 5}))
    p.commit_ok()
    assert txn.committed("g", stable=True) == {(T, 0): 5}
    assert_ok(p.send_offsets("g", {(T, 0): 10}))
    assert txn.committed("g") == {(T, 0): 5}
    with pytest.raises(KafkaError) as info:
        txn.committed("g", [(T, 0)], stable=True)
    assert info.value.error is Errors.UNSTABLE_OFFSET_COMMIT and info.value.retriable
    # Another partition of the group, not in the transaction, is stable.
    assert txn.committed("g", [(T, 1)], stable=True) == {}
    for name, level in (("rc", "read_committed"), ("ru", "read_uncommitted")):
        assert client.post("/consumers/g", json={"name": name, "isolation.level": level}).status_code == 200
    body = {"partitions": [{"topic": T, "partition": 0}]}
    assert_error(client.get("/consumers/g/instances/rc/offsets", json=body), "UNSTABLE_OFFSET_COMMIT", 503)
    assert assert_ok(client.get("/consumers/g/instances/ru/offsets", json=body))["offsets"][0]["offset"] == 5
    p.end(commit)
    expected = 10 if commit else 5
    assert txn.committed("g") == txn.committed("g", stable=True) == {(T, 0): expected}
    assert assert_ok(client.get("/consumers/g/instances/rc/offsets", json=body))["offsets"][0]["offset"] == expected


def test_7_27_generation_fencing_of_a_transactional_offset_commit(txn, topic, client):
    """7.27 for TxnOffsetCommit (KIP-447): offsets sent with a stale generation get
    ILLEGAL_GENERATION, with a member id no longer in the group UNKNOWN_MEMBER_ID; the
    committed offset is unchanged and nothing is pending."""
    for name in ("c1", "c2"):
        assert client.post("/consumers/g", json={"name": name, "auto.commit.enable": "false"}).status_code == 200
    assert client.post("/consumers/g/instances/c1/subscription", json={"topics": [T]}).status_code == 204
    client.get("/consumers/g/instances/c1/records?timeout=0")
    first = assert_ok(client.get("/consumers/g/instances/c1/assignments"))
    gen1, member1 = first["generation_id"], first["member_id"]
    assert client.post("/consumers/g/instances/c2/subscription", json={"topics": [T]}).status_code == 204
    client.get("/consumers/g/instances/c2/records?timeout=0")
    gen2 = assert_ok(client.get("/consumers/g/instances/c2/assignments"))["generation_id"]
    assert gen2 > gen1
    p = txn.producer()
    assert_error(p.send_offsets("g", {(T, 0): 4}, generation_id=gen1, member_id=member1), "ILLEGAL_GENERATION", 409)
    assert_error(p.send_offsets("g", {(T, 0): 4}, member_id="gone-member"), "UNKNOWN_MEMBER_ID", 409)
    assert txn.committed("g", stable=True) == {}
    assert txn.state() == "Empty"
    assert_ok(p.send_offsets("g", {(T, 0): 4}, generation_id=gen2, member_id=member1))
    p.commit_ok()
    assert txn.committed("g", stable=True) == {(T, 0): 4}


def test_7_30_transaction_timeout(txn, topic, server, clock):
    """7.30: timeout 1000 ms, the producer stalls 2000 ms; the abort scan fences it (ABORT
    marker with epoch+1), the LSO passes the marker, the producer's commit gets
    PRODUCER_FENCED and its next produce INVALID_PRODUCER_EPOCH; r is never visible."""
    p = txn.producer("tx", timeout_ms=1000)
    p.send_ok(T, 0, "r")
    clock.advance(2000)
    assert server.transaction_coordinator.abort_timed_out_transactions() == 1
    assert [(o, k, e) for o, k, e in txn.markers(T, 0)] == [(1, "ABORT", p.epoch + 1)]
    assert txn.lso(T, 0) == 2
    assert_error(p.commit(), "PRODUCER_FENCED", 409)
    assert_error(p.send(T, 0, "more"), "INVALID_PRODUCER_EPOCH", 409)
    assert txn.values(T, 0) == []
    assert server.transaction_coordinator.abort_timed_out_transactions() == 0


def test_7_31_delayed_write_of_the_previous_transaction_is_refused(txn, topic):
    """7.31 in V2 mode (dlog's only mode): a produce of transaction N held back in the network
    arrives after N aborted and N+1 added the partition. It carries N's epoch, so it gets
    INVALID_PRODUCER_EPOCH and is never part of N+1 (in V1 it would be committed with N+1)."""
    p = txn.producer()
    p.send_ok(T, 0, "n-0")
    held_back = p.records(T, 0, ["r_a"])  # epoch of N, the next sequence on p
    p.abort_ok()
    p.send_ok(T, 0, "n+1")
    assert_error(txn.produce(T, held_back), "INVALID_PRODUCER_EPOCH", 409)
    p.commit_ok()
    assert txn.values(T, 0) == ["n+1"]
    assert "r_a" not in txn.values(T, 0, "read_uncommitted")


def test_7_32_stale_markers_are_refused(txn, topic, server):
    """7.32, adapted: dlog has one coordinator (controller.db), so there is no coordinator
    epoch to fence. The marker checks that remain: a marker older than the partition's epoch
    for the producer gets INVALID_PRODUCER_EPOCH and appends nothing (3.25), and a marker
    repeated for the same (producer id, epoch) is written once (idempotent)."""
    rm = server.replica_manager
    p = txn.producer()
    p.send_ok(T, 0, "a")
    p.commit_ok()  # COMMIT marker at epoch 1
    leo = txn.offsets(T, 0).log_end_offset
    with pytest.raises(KafkaError) as info:
        rm.write_txn_marker(T, 0, p.pid, 0, CONTROL_ABORT, 1000)
    assert info.value.error is Errors.INVALID_PRODUCER_EPOCH
    again = rm.write_txn_marker(T, 0, p.pid, 1, CONTROL_COMMIT, 1000)
    assert again.duplicate and again.first_offset == leo - 1
    assert txn.offsets(T, 0).log_end_offset == leo
    assert txn.values(T, 0) == ["a"]
