"""EndTxn's answers in every state (kafka-semantics.md 3.21, scenario 7.22), commit retries,
and stale or duplicated EndTxn requests (reliability.md R6, KAFKA-17754, redpanda PR #3501).

dlog runs transactions V2 (KIP-890): EndTxn moves the producer to epoch+1, so a request names
either the epoch the last transaction was *ended with* (a retry, Kafka's ``retryOnEpochBump``)
or the *current* epoch (the next transaction). The V1 table of 3.21 maps onto V2 as Kafka's
own V2 coordinator does (``TransactionCoordinator.endTransaction``), with two documented dlog
choices:

- the same decision retried while the transaction is still Prepare* drives it to completion
  and reports the state reached, where Kafka answers CONCURRENT_TRANSACTIONS: the decision is
  durable, so a retried commit reports success (R5);
- an EndTxn naming the current epoch while the previous transaction is still completing gets
  CONCURRENT_TRANSACTIONS (ydb#52731: never a success), and in Empty or Complete* states, with
  nothing added to the transaction, INVALID_TXN_STATE (Kafka V2 would write an empty abort).
"""
from __future__ import annotations

import pytest

from service.errors import Errors, KafkaError

from .conftest import Crash, assert_error, assert_ok, kafka_error

T = "t"
OK_COMMIT, OK_ABORT = "ok:CompleteCommit", "ok:CompleteAbort"
ITS = "INVALID_TXN_STATE"
CONCURRENT = "CONCURRENT_TRANSACTIONS"

# state -> {(decision, which epoch): expected}; "ended" = the epoch the last transaction was
# ended with (current - 1), "current" = the producer's epoch now.
TABLE = {
    "Empty": {("commit", "current"): ITS, ("abort", "current"): ITS},
    "Ongoing": {("commit", "current"): OK_COMMIT, ("abort", "current"): OK_ABORT},
    "PrepareCommit": {("commit", "ended"): OK_COMMIT, ("abort", "ended"): ITS,
                      ("commit", "current"): CONCURRENT, ("abort", "current"): CONCURRENT},
    "PrepareAbort": {("commit", "ended"): ITS, ("abort", "ended"): OK_ABORT,
                     ("commit", "current"): CONCURRENT, ("abort", "current"): CONCURRENT},
    "CompleteCommit": {("commit", "ended"): OK_COMMIT, ("abort", "ended"): ITS,
                       ("commit", "current"): ITS, ("abort", "current"): ITS},
    "CompleteAbort": {("commit", "ended"): ITS, ("abort", "ended"): OK_ABORT,
                      ("commit", "current"): ITS, ("abort", "current"): ITS},
}
CASES = [(state, decision, which, expected) for state, row in TABLE.items()
         for (decision, which), expected in row.items()]


def put_in_state(txn, crash_at, state: str):
    """A producer of "tx" whose transaction is in ``state``; returns (producer, ended epoch)."""
    p = txn.producer("tx")
    if state == "Empty":
        return p, None
    p.send_ok(T, 0, "x")
    p.send_ok(T, 1, "y")
    if state == "Ongoing":
        return p, None
    ended = p.epoch
    commit = state.endswith("Commit")
    if state.startswith("Prepare"):
        crash_at("txn.after_prepare")  # the coordinator "dies" with the decision durable
        with pytest.raises(Crash):
            p.end(commit)
        p.epoch = ended + 1  # what the EndTxn would have answered
    else:
        assert_ok(p.end(commit))
    assert txn.state() == state
    return p, ended


def snapshot(txn) -> tuple:
    d = txn.describe()
    return (d["state"], d["producer_epoch"], tuple(txn.offsets(T, p).log_end_offset for p in range(3)))


@pytest.mark.parametrize("state, decision, which, expected", CASES,
                         ids=[f"{s}-{d}-{w}" for s, d, w, _e in CASES])
def test_end_txn_table(txn, topic, crash_at, state, decision, which, expected):
    """3.21 / 7.22 in V2 form: the answer to each (state, decision, epoch) and, for an error,
    no change at all (state, epoch, every LEO)."""
    p, ended = put_in_state(txn, crash_at, state)
    epoch = ended if which == "ended" else p.epoch
    before = snapshot(txn)
    resp = txn.end("tx", p.pid, epoch, decision == "commit")
    if expected.startswith("ok:"):
        body = assert_ok(resp)
        assert body["state"] == expected[3:]
        assert body["producer_epoch"] == (p.epoch + 1 if which == "current" else p.epoch)
        assert txn.state() == expected[3:]
    else:
        assert_error(resp, expected, 503 if expected == CONCURRENT else 409)
        assert snapshot(txn) == before


@pytest.mark.parametrize("state", list(TABLE))
def test_wrong_producer_or_epoch_in_every_state(txn, topic, crash_at, state):
    """A pid that does not own the id -> INVALID_PRODUCER_ID_MAPPING; an epoch other than the
    current one or the one the last transaction ended with -> PRODUCER_FENCED; an unknown id
    -> INVALID_PRODUCER_ID_MAPPING. None of them changes anything."""
    p, ended = put_in_state(txn, crash_at, state)
    before = snapshot(txn)
    for commit in (True, False):
        assert_error(txn.end("tx", p.pid + 1000, p.epoch, commit), "INVALID_PRODUCER_ID_MAPPING", 409)
        assert_error(txn.end("nobody", p.pid, p.epoch, commit), "INVALID_PRODUCER_ID_MAPPING", 409)
        assert_error(txn.end("tx", p.pid, p.epoch + 1, commit), "PRODUCER_FENCED", 409)
        if p.epoch >= 2:
            assert_error(txn.end("tx", p.pid, p.epoch - 2, commit), "PRODUCER_FENCED", 409)
    assert snapshot(txn) == before


def test_empty_transactional_id_is_invalid_request(server):
    with pytest.raises(KafkaError) as info:
        server.transaction_coordinator.handle_end_transaction("", 0, 0, True)
    assert info.value.error is Errors.INVALID_REQUEST


def test_end_txn_body_is_validated(txn, topic):
    """Malformed EndTxn bodies are 422 and change nothing."""
    p = txn.producer()
    p.send_ok(T, 0, "x")
    url = f"{txn.v3}/transactions/tx:commit"
    for body in ({}, {"producer_id": p.pid}, {"producer_id": "0", "producer_epoch": 0},
                 {"producer_id": p.pid, "producer_epoch": -1}, {"producer_id": p.pid, "producer_epoch": 40000},
                 {"producer_id": p.pid, "producer_epoch": 0, "extra": 1}, [1, 2]):
        resp = txn.client.post(url, json=body)
        assert resp.status_code == 422, (body, resp.get_data(as_text=True))
    assert txn.state() == "Ongoing"


def test_commit_retried_after_success_reports_success(txn, topic):
    """6.4 / redpanda PR #3501: EndTxn(commit) retried after it succeeded answers success with
    the same result, any number of times, and writes nothing more."""
    p = txn.producer()
    p.send_ok(T, 0, "a")
    p.send_ok(T, 2, "b")
    first = p.commit_ok()
    leo = [txn.offsets(T, q).log_end_offset for q in range(3)]
    for _ in range(3):
        again = assert_ok(txn.end("tx", p.pid, 0, True))
        assert again == first
    assert [txn.offsets(T, q).log_end_offset for q in range(3)] == leo
    assert txn.values(T, 0) == ["a"] and txn.values(T, 2) == ["b"]


def test_abort_retried_after_success_reports_success(txn, topic):
    p = txn.producer()
    p.send_ok(T, 0, "a")
    first = p.abort_ok()
    assert assert_ok(txn.end("tx", p.pid, 0, False)) == first
    assert len(txn.markers(T, 0)) == 1


def test_commit_of_added_but_unwritten_partition_succeeds(txn, create_topic):
    """6.4 / ydb#51053 / 3.23: a partition joined the transaction but its data never landed
    (here: the record was too large, refused after the implicit AddPartitionsToTxn). EndTxn
    succeeds, writes a marker there too, and that marker moves neither LSO nor the index."""
    create_topic(T, 2, 3, max_message_bytes="200")
    p = txn.producer()
    p.send_ok(T, 0, "fits")
    assert_error(p.send(T, 1, "x" * 500), "MESSAGE_TOO_LARGE", 413)
    assert sorted(q["partition_id"] for q in txn.describe()["partitions"]) == [0, 1]
    p.commit_ok()
    assert [k for _o, k, _e in txn.markers(T, 1)] == ["COMMIT"]
    o = txn.offsets(T, 1)
    assert o.last_stable_offset == o.high_watermark == o.log_end_offset == 1
    assert txn.values(T, 0) == ["fits"] and txn.values(T, 1) == []


def test_offsets_only_transaction_commits(txn, topic):
    """A transaction that only carries consumer offsets (no data) commits and applies them."""
    p = txn.producer()
    assert_ok(p.send_offsets("g", {(T, 0): 12, (T, 1): 3}))
    assert txn.state() == "Ongoing"
    p.commit_ok()
    assert txn.committed("g", stable=True) == {(T, 0): 12, (T, 1): 3}


ROUNDS = 20


@pytest.mark.parametrize("stale_commit", [True, False])
def test_stale_end_txn_never_touches_the_next_transaction(txn, topic, stale_commit):
    """R6 / KAFKA-17754: the EndTxn of transaction N (commit or abort) replayed after N+1
    began (data and offsets) is rejected, and N+1's contents and outcome are unchanged; N+1
    can still be aborted and N+2 committed. Repeated ``ROUNDS`` times on one producer."""
    p = txn.producer()
    expected_visible: list = []
    for i in range(ROUNDS):
        p.send_ok(T, 0, f"n{i}")
        stale = (p.pid, p.epoch)
        assert_ok(p.end(stale_commit))
        if stale_commit:
            expected_visible.append(f"n{i}")
        p.send_ok(T, 0, f"m{i}")
        assert_ok(p.send_offsets("g", {(T, 1): i + 1}))
        # The replay, whichever decision it carries, is fenced: N+1 has begun, so N's epoch
        # is neither current nor the one the id's last transaction ended with.
        for commit in (True, False, stale_commit):
            assert kafka_error(txn.end("tx", *stale, commit)) == "PRODUCER_FENCED"
        assert txn.state() == "Ongoing" and txn.describe()["producer_epoch"] == p.epoch
        if i % 2:
            p.commit_ok()
            expected_visible.append(f"m{i}")
        else:
            p.abort_ok()
        assert txn.values(T, 0) == expected_visible
    committed_rounds = [i for i in range(ROUNDS) if i % 2]
    assert txn.committed("g", stable=True) == {(T, 1): committed_rounds[-1] + 1}


def test_duplicate_abort_after_the_next_transaction_began(txn, topic):
    """R6: a duplicated EndTxn(abort) of N, arriving while N+1 is open and again after N+1
    committed, leaves N+1 committed with all its records."""
    p = txn.producer()
    p.send_ok(T, 0, "n")
    stale = (p.pid, p.epoch)
    p.abort_ok()
    p.send_ok(T, 0, "n+1-a")
    p.send_ok(T, 1, "n+1-b")
    assert_error(txn.end("tx", *stale, False), "PRODUCER_FENCED", 409)
    p.commit_ok()
    assert_error(txn.end("tx", *stale, False), "PRODUCER_FENCED", 409)
    assert txn.values(T, 0) == ["n+1-a"] and txn.values(T, 1) == ["n+1-b"]


@pytest.mark.parametrize("commit", [True, False])
def test_the_markers_of_a_transaction_are_written_in_all_its_partitions_at_once(txn, topic, server, commit):
    """As Kafka's coordinator sends WriteTxnMarkers to every leader together: a commit over
    three partitions writes the three markers at the same time (each in its own thread), not
    one after the other, and the outcome is the same."""
    import threading

    p = txn.producer()
    for q in range(3):
        p.send_ok(T, q, f"v{q}")
    rm = server.replica_manager
    write = rm.write_txn_marker
    all_in = threading.Barrier(3, timeout=5)  # one at a time never gets past it
    threads = set()

    def together(*args):
        threads.add(threading.current_thread().name)
        all_in.wait()
        return write(*args)

    rm.write_txn_marker = together
    try:
        body = p.commit_ok() if commit else p.abort_ok()
    finally:
        rm.write_txn_marker = write
    assert body["state"] == ("CompleteCommit" if commit else "CompleteAbort")
    assert len(threads) == 3
    for q in range(3):
        assert [k for _o, k, _e in txn.markers(T, q)] == ["COMMIT" if commit else "ABORT"]
        assert txn.values(T, q) == ([f"v{q}"] if commit else [])
