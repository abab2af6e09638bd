"""Consumer instances and transactions: read_committed never returns records of aborted or
open transactions (nor markers), and exactly-once consume-transform-produce (4.20) with the
group's offsets inside the transaction, fenced by generation and member id (4.14)."""
from __future__ import annotations

from tests.groups.conftest import error_of, values


def test_read_committed_never_returns_aborted_or_open_transaction_records(
        consumer, create_topic, produce_json, txn_producer):
    create_topic("t")
    rc = consumer("g-rc", "c", auto_offset_reset="earliest", isolation_level="read_committed")
    ru = consumer("g-ru", "c", auto_offset_reset="earliest")
    rc.subscribe("t")
    ru.subscribe("t")
    produce_json("t", ["plain-0"])
    tx = txn_producer("tx-1")
    tx.send("t", 0, "aborted-0", "aborted-1")  # an open transaction
    produce_json("t", ["plain-1"])  # after the open transaction: held back by the LSO
    assert values(rc.drain()) == ["plain-0"]
    assert values(ru.drain()) == ["plain-0", "aborted-0", "aborted-1", "plain-1"]
    tx.end(commit=False)  # abort: a marker at offset 4
    assert values(rc.drain()) == ["plain-1"]
    tx.send("t", 0, "committed-0")
    assert rc.drain() == []  # open again
    tx.end(commit=True)
    produce_json("t", ["plain-2"])
    got = rc.drain()
    assert values(got) == ["committed-0", "plain-2"]
    assert [r["offset"] for r in got] == [5, 7]  # 6 is the commit marker, never returned
    assert values(ru.drain()) == ["committed-0", "plain-2"]


def test_read_committed_latest_and_seek_to_end_stop_at_the_last_stable_offset(
        consumer, create_topic, produce_json, txn_producer):
    create_topic("t")
    produce_json("t", ["before"])
    tx = txn_producer("tx-1")
    tx.send("t", 0, "in-txn")
    rc_latest = consumer("g1", "c", isolation_level="read_committed")
    ru_latest = consumer("g2", "c")
    rc_latest.subscribe("t")
    ru_latest.subscribe("t")
    assert rc_latest.poll() == [] and ru_latest.poll() == []  # positions: LSO 1, HW 2
    rc_end = consumer("g3", "c", isolation_level="read_committed")
    rc_end.assign(("t", 0))
    r = rc_end.post("/positions/end", {"partitions": [{"topic": "t", "partition": 0}]})
    assert r.status_code == 204
    tx.end(commit=True)
    assert values(rc_latest.drain()) == ["in-txn"]
    assert values(rc_end.drain()) == ["in-txn"]
    assert ru_latest.drain() == []  # it started at the HW, past the transaction's record


def _consume_transform_produce(consumer_, tx, group: str, commit: bool = True,
                               crash_before_commit: bool = False) -> list:
    """One round of 4.20: poll (read_committed), produce one output per input, send the
    offsets (last + 1) with the instance's generation and member id, then commit or abort."""
    batch = consumer_.poll()
    if not batch:
        return []
    a = consumer_.assignments()
    offsets = {}
    for r in batch:
        tx.send("out", 0, f"out-of-{r['value']}")
        offsets[(r["topic"], r["partition"])] = r["offset"] + 1
    resp = tx.send_offsets(group, offsets, a["generation_id"], a["member_id"])
    assert resp.status_code == 204, resp.get_data(as_text=True)
    if crash_before_commit:
        return batch
    tx.end(commit=commit)
    if not commit:
        # 4.20: on abort, seek back to the committed offsets.
        committed = consumer_.committed(*offsets)
        for (t, p), o in committed.items():
            consumer_.seek(t, p, o if o >= 0 else 0)
    return batch


def test_exactly_once_consume_transform_produce(consumer, create_topic, produce_json, txn_producer, client):
    create_topic("in", partitions=2)
    create_topic("out")
    produce_json("in", ["a", "b"], partition=0)
    produce_json("in", ["c"], partition=1)
    worker = consumer("eos", "w1", auto_offset_reset="earliest", auto_commit_enable="false",
                      isolation_level="read_committed")
    worker.subscribe("in")
    tx = txn_producer("eos-tx")
    # 1. An aborted attempt: its outputs are never visible, its offsets never committed.
    assert sorted(values(_consume_transform_produce(worker, tx, "eos", commit=False))) == ["a", "b", "c"]
    assert worker.committed(("in", 0), ("in", 1)) == {("in", 0): -1, ("in", 1): -1}
    # 2. The retry after seeking back commits outputs and offsets together.
    assert sorted(values(_consume_transform_produce(worker, tx, "eos"))) == ["a", "b", "c"]
    assert worker.committed(("in", 0), ("in", 1)) == {("in", 0): 2, ("in", 1): 1}
    # 3. The worker dies mid-transaction (outputs written, offsets sent, no commit).
    produce_json("in", ["d"], partition=0)
    produce_json("in", ["e"], partition=1)
    assert sorted(values(_consume_transform_produce(worker, tx, "eos", crash_before_commit=True))) == ["d", "e"]
    worker.delete()
    # Its replacement: InitProducerId with the same transactional id fences and aborts the
    # zombie's transaction; the new instance resumes at the committed offsets.
    tx2 = txn_producer("eos-tx")
    assert tx2.producer_epoch > tx.producer_epoch
    worker2 = consumer("eos", "w2", auto_offset_reset="earliest", auto_commit_enable="false",
                       isolation_level="read_committed")
    worker2.subscribe("in")
    assert sorted(values(_consume_transform_produce(worker2, tx2, "eos"))) == ["d", "e"]
    assert worker2.poll() == []
    # A read_committed reader of the output sees each input's output exactly once.
    reader = consumer("reader", "r", auto_offset_reset="earliest", isolation_level="read_committed")
    reader.subscribe("out")
    outputs = values(reader.drain())
    assert sorted(outputs) == [f"out-of-{v}" for v in "abcde"]
    # A read_uncommitted reader also sees the outputs of the aborted and fenced attempts.
    dirty = consumer("dirty", "r", auto_offset_reset="earliest")
    dirty.subscribe("out")
    assert len(dirty.drain()) == 3 + 3 + 2 + 2


def test_transactional_offsets_of_a_stale_generation_or_unknown_member_are_fenced(
        consumer, create_topic, txn_producer):
    create_topic("in", partitions=2)
    a = consumer("eos", "a", auto_commit_enable="false", isolation_level="read_committed")
    a.subscribe("in")
    a.poll()
    before = a.assignments()
    b = consumer("eos", "b", auto_commit_enable="false", isolation_level="read_committed")
    b.subscribe("in")  # a rebalance: a's generation is stale, a is a zombie until it polls
    tx = txn_producer("tx-a")
    r = tx.send_offsets("eos", {("in", 0): 1}, before["generation_id"], before["member_id"])
    assert error_of(r, 409)["kafka_error"] == "ILLEGAL_GENERATION"
    after = b.assignments()
    r = tx.send_offsets("eos", {("in", 0): 1}, after["generation_id"], "not-a-member")
    assert error_of(r, 409)["kafka_error"] == "UNKNOWN_MEMBER_ID"
    a.poll()  # a adopts the new generation and may send offsets again
    now = a.assignments()
    assert now["generation_id"] == after["generation_id"] and now["member_id"] == before["member_id"]
    r = tx.send_offsets("eos", {next(iter(a.assignment())): 1}, now["generation_id"], now["member_id"])
    assert r.status_code == 204, r.get_data(as_text=True)


def test_pending_transactional_offsets_hold_read_committed_instances(
        consumer, create_topic, produce_json, txn_producer):
    """KIP-447: while a transaction holds offsets of a partition, a read_committed instance
    neither reads the committed offset (503 UNSTABLE_OFFSET_COMMIT) nor starts the partition
    from auto.offset.reset; it resumes at the offset the transaction commits."""
    create_topic("in")
    produce_json("in", list(range(5)))
    tx = txn_producer("tx-1")
    r = tx.send_offsets("eos", {("in", 0): 3})  # an old-style commit: no generation, no member
    assert r.status_code == 204, r.get_data(as_text=True)
    rc = consumer("eos", "rc", auto_offset_reset="earliest", auto_commit_enable="false",
                  isolation_level="read_committed")
    rc.assign(("in", 0))
    resp = rc.client.get(rc.path + "/offsets", content_type="application/vnd.kafka.v2+json",
                         data=b'{"partitions": [{"topic": "in", "partition": 0}]}')
    body = error_of(resp, 503)
    assert body["kafka_error"] == "UNSTABLE_OFFSET_COMMIT"
    assert rc.poll() == []  # not from earliest: it waits for the transaction
    ru = consumer("eos", "ru", auto_commit_enable="false")
    assert ru.committed(("in", 0)) == {("in", 0): -1}  # read_uncommitted sees the last committed
    tx.end(commit=True)
    assert values(rc.drain()) == [3, 4]
    assert ru.committed(("in", 0)) == {("in", 0): 3}


def test_a_zombie_worker_is_fenced_by_the_restarted_one(consumer, create_topic, produce_json, txn_producer):
    """The restart's InitProducerId bumps the epoch and aborts the zombie's transaction: the
    zombie's produce, offsets and commit are all refused, and its outputs never become visible."""
    create_topic("in")
    create_topic("out")
    produce_json("in", ["a"])
    zombie_consumer = consumer("eos", "w1", auto_offset_reset="earliest", auto_commit_enable="false",
                               isolation_level="read_committed")
    zombie_consumer.subscribe("in")
    zombie = txn_producer("eos-tx")
    zombie.send("out", 0, "out-of-a")
    assert values(zombie_consumer.poll()) == ["a"]
    stale = zombie_consumer.assignments()
    # The supervisor believes w1 dead and starts w2 (a new instance and InitProducerId).
    fresh = txn_producer("eos-tx")
    successor = consumer("eos", "w2", auto_offset_reset="earliest", auto_commit_enable="false",
                         isolation_level="read_committed")
    successor.subscribe("in")
    r = zombie.client.post(f"{zombie.v3}/topics/out/records", content_type="application/json", data=(
        b'{"partition_id": 0, "value": {"type": "JSON", "data": "late"}, "producer_id": %d, "producer_epoch": %d, '
        b'"sequence": 1, "transactional_id": "eos-tx"}' % (zombie.producer_id, zombie.producer_epoch)))
    assert error_of(r, 409)["kafka_error"] == "INVALID_PRODUCER_EPOCH"
    r = zombie.send_offsets("eos", {("in", 0): 1}, stale["generation_id"], stale["member_id"])
    assert error_of(r, 409)["kafka_error"] == "PRODUCER_FENCED"  # the epoch is checked first
    r = zombie.client.post(f"{zombie.v3}/transactions/eos-tx:commit",
                           json={"producer_id": zombie.producer_id, "producer_epoch": zombie.producer_epoch})
    assert error_of(r, 409)["kafka_error"] == "PRODUCER_FENCED"
    reader = consumer("reader", "r", auto_offset_reset="earliest", isolation_level="read_committed")
    reader.subscribe("out")
    assert reader.drain() == []  # the zombie's output was aborted
    assert fresh.producer_epoch > zombie.producer_epoch
