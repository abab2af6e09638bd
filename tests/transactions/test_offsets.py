"""Transactional consumer offsets (kafka-semantics.md 3.E, 3.19-3.20, 4.14).

Offsets sent in a transaction are pending until it commits: invisible as committed offsets,
and a stable fetch (read_committed consumers, KIP-447) of their partitions answers
UNSTABLE_OFFSET_COMMIT. Commit applies them (all groups, all partitions, the last value sent
for each); abort, fencing and timeout drop them.
"""
from __future__ import annotations

import pytest

from service.errors import Errors, KafkaError

from .conftest import Crash, assert_error, assert_ok

T = "t"


def _unstable(txn, group, partitions) -> bool:
    try:
        txn.committed(group, partitions, stable=True)
    except KafkaError as exc:
        assert exc.error is Errors.UNSTABLE_OFFSET_COMMIT
        return True
    return False


def test_offsets_of_several_groups_apply_only_at_commit(txn, topic):
    p = txn.producer()
    p.send_ok(T, 0, "data")
    assert_ok(p.send_offsets("g1", {(T, 0): 4, (T, 1): 2}))
    assert_ok(p.send_offsets("g2", {(T, 2): 8}))
    assert_ok(p.send_offsets("g1", {(T, 0): 5}))  # sent again: the last value wins
    assert txn.committed("g1") == {} and txn.committed("g2") == {}
    assert _unstable(txn, "g1", [(T, 0)]) and _unstable(txn, "g1", [(T, 1)]) and _unstable(txn, "g2", None)
    assert not _unstable(txn, "g1", [(T, 2)])
    p.commit_ok()
    assert txn.committed("g1", stable=True) == {(T, 0): 5, (T, 1): 2}
    assert txn.committed("g2", stable=True) == {(T, 2): 8}


@pytest.mark.parametrize("how", ["abort", "fenced", "timeout"])
def test_offsets_dropped_when_the_transaction_does_not_commit(txn, topic, server, clock, how):
    """Abort, zombie fencing by a new instance, and the timeout abort all drop the pending
    offsets: the committed ones stay, and the partitions are stable again."""
    p = txn.producer("tx", timeout_ms=5000)
    assert_ok(p.send_offsets("g", {(T, 0): 3}))
    p.commit_ok()
    assert_ok(p.send_offsets("g", {(T, 0): 30, (T, 1): 31}))
    if how == "abort":
        p.abort_ok()
    elif how == "fenced":
        txn.producer("tx")
    else:
        clock.advance(5001)
        assert server.transaction_coordinator.abort_timed_out_transactions() == 1
    assert txn.committed("g", stable=True) == {(T, 0): 3}
    assert not _unstable(txn, "g", None)


def test_offsets_of_a_fenced_producer_are_refused(txn, topic):
    p = txn.producer()
    txn.producer()  # a new instance
    assert_error(p.send_offsets("g", {(T, 0): 1}), "PRODUCER_FENCED", 409)
    assert txn.committed("g") == {} and not _unstable(txn, "g", None)


def test_offsets_while_the_previous_transaction_completes(txn, server, crash_at, topic):
    """TxnOffsetCommit with the new epoch while the previous transaction is still PrepareCommit
    gets CONCURRENT_TRANSACTIONS (retriable), then succeeds once it completed."""
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 1}))
    crash_at("txn.after_prepare")
    with pytest.raises(Crash):
        p.commit()
    assert_error(txn.txn_offsets("tx", p.pid, 1, "g", {(T, 0): 2}), "CONCURRENT_TRANSACTIONS", 503)
    assert _unstable(txn, "g", [(T, 0)])  # the prepared commit's offsets are still pending
    server.transaction_coordinator.complete_prepared_transactions()
    assert txn.committed("g", stable=True) == {(T, 0): 1}
    assert_ok(txn.txn_offsets("tx", p.pid, 1, "g", {(T, 0): 2}))


def test_offsets_request_validation(txn, topic):
    p = txn.producer()
    url = f"{txn.v3}/transactions/tx/offsets"
    base = {"producer_id": p.pid, "producer_epoch": p.epoch, "consumer_group_id": "g"}
    for body in ({**base, "offsets": []},
                 {**base, "offsets": [{"topic_name": T, "partition_id": 0}]},
                 {**base, "offsets": [{"topic_name": T, "partition_id": 0, "offset": -1}]},
                 {**base, "consumer_group_id": "", "offsets": [{"topic_name": T, "partition_id": 0, "offset": 1}]},
                 {**base, "offsets": [{"topic_name": T, "partition_id": 0, "offset": 1}], "unknown": 1}):
        resp = txn.client.post(url, json=body)
        assert resp.status_code == 422, (body, resp.get_data(as_text=True))
    resp = txn.client.post(url, json={**base, "offsets": [{"topic_name": "nope", "partition_id": 0, "offset": 1}]})
    assert resp.status_code == 404
    resp = txn.client.post(url, json={**base, "offsets": [{"topic_name": T, "partition_id": 9, "offset": 1}]})
    assert resp.status_code == 404
    assert txn.state() == "Empty" and txn.committed("g") == {}


def _plain_commit(txn, client, offsets: dict) -> None:
    resp = client.post(f"{txn.v3}/consumer-groups/g/offsets", json={"offsets": [
        {"topic_name": t, "partition_id": p, "offset": o} for (t, p), o in offsets.items()]})
    assert resp.status_code == 204, resp.get_data(as_text=True)


def test_plain_commit_after_the_transactional_offsets_wins(txn, topic, client):
    """3.19: at commit a pending offset replaces the committed one only if it was sent later."""
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 10, (T, 1): 11}))
    _plain_commit(txn, client, {(T, 0): 20})
    p.commit_ok()
    # partition 0: the plain commit came after the transaction's offsets and stays; partition
    # 1 had no later commit and takes the transaction's
    assert txn.committed("g", stable=True) == {(T, 0): 20, (T, 1): 11}


def test_transactional_offsets_sent_after_a_plain_commit_replace_it(txn, topic, client):
    _plain_commit(txn, client, {(T, 0): 20, (T, 1): 21})
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 5}))
    assert txn.committed("g") == {(T, 0): 20, (T, 1): 21}  # pending until the commit
    p.commit_ok()
    assert txn.committed("g", stable=True) == {(T, 0): 5, (T, 1): 21}


def test_the_last_send_of_a_transaction_counts(txn, topic, client):
    """Offsets sent twice in one transaction: the later send is the one ordered and applied."""
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 10}))
    _plain_commit(txn, client, {(T, 0): 20})
    assert_ok(p.send_offsets("g", {(T, 0): 30}))
    p.commit_ok()
    assert txn.committed("g", stable=True) == {(T, 0): 30}
