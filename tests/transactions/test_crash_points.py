"""Crash tests against a real ``dlog serve`` at every named crash point of a transaction
(reliability.md R5; kafka-semantics.md 3.39; ARCHITECTURE.md section 3's two-phase commit).

Each case starts ``dlog serve`` (one gunicorn worker) with ``DLOG_CRASH_POINTS=<point>``, runs
one transaction over the three partitions of ``t`` (replication factor 3, so three broker
files) plus transactional consumer offsets, and lets the worker die at the point
(``os._exit``, no answer). The gunicorn master is frozen (SIGSTOP) before the fatal request,
so it cannot respawn the worker: the files hold exactly what the crash left, which the test
reads directly. Then the whole process group is killed with SIGKILL (a full crash), every
file must pass ``PRAGMA integrity_check``, and the service restarts WITHOUT the crash point.

After the restart: start-up recovery has completed the transaction with the decision made
(PrepareCommit/PrepareAbort are rolled forward, never reversed); on every partition and on
every replica file, the transaction's records are all visible to read_committed readers or
none are, with exactly one marker of the new epoch; the group offsets moved iff it
committed, and nothing is left pending; a retried EndTxn reports the outcome and the other
decision is refused; the producer carries on with the epoch it was given.

``test_worker_respawn`` covers the case the master is not frozen: gunicorn respawns the worker
with the crash point still set, and its start-up recovery either completes the transaction
itself or dies again at the same point, until the full crash and the clean restart.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from tests.e2e.conftest import integrity_check

from .process import Files, HttpError, HttpTxn

T, IN, GROUP, TID = "t", "in", "g", "tx"
PARTITIONS = (0, 1, 2)
BASELINE = {(IN, 0): 1, (IN, 1): 1}
TXN_OFFSETS = {(IN, 0): 40, (IN, 1): 50}
END_POINTS = ["txn.after_prepare", "txn.after_marker", "txn.before_complete", "txn.after_complete"]


def _values(tag: str = "v") -> dict[int, list[str]]:
    return {p: [f"{tag}{p}-{i}" for i in range(3)] for p in PARTITIONS}


def _records(pid: int, epoch: int, values: dict[int, list[str]]) -> list[dict]:
    return [r for p in PARTITIONS for r in HttpTxn.txn_records(TID, pid, epoch, p, values[p], 0)]


def _start(dlog_procs, point: str):
    dlog = dlog_procs(workers=1, threads=4, env={"DLOG_CRASH_POINTS": point}).start()
    dlog.create_topic(T, 3, 3)
    dlog.create_topic(IN, 2, 1)
    http = HttpTxn(dlog)
    http.reset_group_offsets(GROUP, BASELINE)
    return dlog, http


def _crash(dlog, call) -> None:
    """Freeze the master, make the call that reaches the crash point, and wait until the
    worker is gone: the call must get no answer."""
    workers = dlog.worker_pids()
    assert len(workers) == 1
    os.kill(dlog.pid, signal.SIGSTOP)
    with pytest.raises(requests.RequestException):
        call()
    deadline = time.monotonic() + 15
    while dlog.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not dlog.worker_pids(), "the worker survived its crash point"
    assert "crash point" in dlog.log_text()


def _full_crash_and_restart(dlog) -> HttpTxn:
    dlog.kill9()
    checks = integrity_check(dlog.data_dir)
    assert checks and all(v == "ok" for v in checks.values()), checks
    dlog.extra_env.pop("DLOG_CRASH_POINTS", None)
    dlog.start()
    return HttpTxn(dlog)


def check_outcome(dlog, http: HttpTxn, pid: int, epoch: int, values: dict[int, list[str]], commit: bool,
                  plain: dict[int, list[str]] | None = None) -> None:
    """All or nothing, through HTTP and in every replica file, and the coordinator's state."""
    plain = plain or {}
    files = Files(dlog.data_dir)
    settled = http.wait_settled(T, PARTITIONS)
    for p, s in settled.items():
        assert s["high_watermark"] == s["log_end_offset"] == s["last_stable_offset"], (p, s)
        assert sorted(s["isr"]) == [0, 1, 2], (p, s)  # HW == LEO over a full ISR: every replica has all
    meta = http.describe(TID)
    assert meta["state"] == ("CompleteCommit" if commit else "CompleteAbort"), meta
    assert (meta["producer_id"], meta["producer_epoch"], meta["partitions"]) == (pid, epoch + 1, [])
    for p in PARTITIONS:
        expected = (values[p] if commit else []) + plain.get(p, [])
        assert [v for _o, v in http.read(T, p, "read_committed")] == expected, p
        assert [v for _o, v in http.read(T, p, "read_uncommitted")] == values[p] + plain.get(p, []), p
        replicas = files.replicas(T, p)
        assert sorted(replicas) == [0, 1, 2], p
        logs = [r["records"] for r in replicas.values()]
        assert all(log == logs[0] for log in logs), f"replicas of {T}-{p} differ: {logs}"
        mine = [r for r in logs[0] if r["pid"] == pid]
        assert [r.get("value") for r in mine if "value" in r] == values[p], p
        assert all(r["epoch"] == epoch for r in mine if "value" in r)
        markers = [(r["marker"], r["epoch"]) for r in mine if "marker" in r]
        assert markers == [("COMMIT" if commit else "ABORT", epoch + 1)], (p, markers)
    assert http.group_offsets(GROUP) == (BASELINE | TXN_OFFSETS if commit else BASELINE)
    assert files.pending_offsets() == []
    # A retried EndTxn reports the outcome; the other decision is refused.
    again = http.end(TID, pid, epoch, commit)
    assert (again["state"], again["producer_epoch"]) == (meta["state"], epoch + 1)
    with pytest.raises(HttpError) as info:
        http.end(TID, pid, epoch, not commit)
    assert info.value.kafka_error == "INVALID_TXN_STATE"
    # The producer carries on with the epoch it was given.
    http.produce(T, HttpTxn.txn_records(TID, pid, epoch + 1, 2, ["next"], 0))
    assert http.end(TID, pid, epoch + 1, True)["state"] == "CompleteCommit"
    assert http.read(T, 2)[-1][1] == "next"


def _final_integrity(dlog) -> None:
    dlog.kill9()
    checks = integrity_check(dlog.data_dir)
    assert checks and all(v == "ok" for v in checks.values()), checks


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize("point", END_POINTS)
def test_end_txn_crash_point(dlog_procs, point, commit):
    dlog, http = _start(dlog_procs, point)
    pid, epoch = http.init(TID)
    values = _values()
    http.produce(T, _records(pid, epoch, values))
    http.plain(T, 1, ["plain"])
    http.txn_offsets(TID, pid, epoch, GROUP, TXN_OFFSETS)
    assert http.read(T, 1) == []  # the open transaction holds the plain record back
    _crash(dlog, lambda: http.end(TID, pid, epoch, commit))
    # What the crash left: the decision is durable from txn.after_prepare on.
    state, _pid, stored_epoch = Files(dlog.data_dir).txn_state(TID)
    decided = "Commit" if commit else "Abort"
    assert state == (f"Complete{decided}" if point == "txn.after_complete" else f"Prepare{decided}")
    assert stored_epoch == epoch + 1
    http = _full_crash_and_restart(dlog)
    check_outcome(dlog, http, pid, epoch, values, commit, plain={1: ["plain"]})
    _final_integrity(dlog)


@pytest.mark.parametrize("then", ["retry", "reinit"])
def test_transactional_produce_crash_point(dlog_procs, then):
    """produce.after_append: one request writes the three partitions, the worker dies after
    appending the first (and after adding all three to the transaction). After the full crash
    and restart the transaction is Ongoing with one partition written. ``retry``: the client
    resends the same request (same epoch and sequences): partition 0 answers its original
    offsets as a duplicate, the others are appended, and the commit shows every record exactly
    once. ``reinit``: a new instance aborts the transaction (ABORT markers on all three
    partitions, none of the records visible, offsets untouched) and fences the old epoch."""
    dlog, http = _start(dlog_procs, "produce.after_append")
    pid, epoch = http.init(TID)
    http.txn_offsets(TID, pid, epoch, GROUP, TXN_OFFSETS)
    values = _values("r")
    records = _records(pid, epoch, values)
    _crash(dlog, lambda: http.produce(T, records))
    files = Files(dlog.data_dir)
    assert files.txn_state(TID) == ("Ongoing", pid, epoch)
    written = {p: {b: [r["value"] for r in replica["records"]] for b, replica in files.replicas(T, p).items()}
               for p in PARTITIONS}
    assert any(values[0] == got for got in written[0].values()), written  # the leader of partition 0 has it
    assert not any(written[1].values()) and not any(written[2].values()), written
    http = _full_crash_and_restart(dlog)
    assert http.describe(TID)["state"] == "Ongoing"
    if then == "retry":
        reports = http.produce(T, records)
        dup = [r["partition_id"] for r in reports if r.get("duplicate")]
        assert sorted(set(dup)) == [0], reports
        assert http.end(TID, pid, epoch, True)["state"] == "CompleteCommit"
        check_outcome(dlog, http, pid, epoch, values, True)
    else:
        new_pid, new_epoch = http.init(TID)
        assert (new_pid, new_epoch) == (pid, epoch + 2)
        assert http.describe(TID)["state"] == "Empty"
        settled = http.wait_settled(T, PARTITIONS)
        for p in PARTITIONS:
            assert http.read(T, p) == [], p
            assert settled[p]["last_stable_offset"] == settled[p]["log_end_offset"]
            for b, replica in files.replicas(T, p).items():
                markers = [(r["marker"], r["epoch"]) for r in replica["records"] if "marker" in r]
                assert markers == [("ABORT", epoch + 1)], (p, b, markers)
        assert http.group_offsets(GROUP) == BASELINE and files.pending_offsets() == []
        with pytest.raises(HttpError) as info:
            http.produce(T, records)
        assert info.value.kafka_error == "INVALID_PRODUCER_EPOCH"
    _final_integrity(dlog)


@pytest.mark.parametrize("point", ["txn.after_prepare", "txn.after_marker"])
def test_worker_respawn(dlog_procs, point):
    """The master is not frozen: gunicorn respawns the worker, still with the crash point set.
    After txn.after_prepare the new worker's start-up recovery finishes the commit itself (the
    service is ready again and shows it committed). After txn.after_marker every
    respawned worker dies again in recovery at the same point, until the full crash and the
    clean restart finish it; the markers written on the way are not repeated."""
    dlog, http = _start(dlog_procs, point)
    pid, epoch = http.init(TID)
    values = _values()
    http.produce(T, _records(pid, epoch, values))
    http.txn_offsets(TID, pid, epoch, GROUP, TXN_OFFSETS)
    first_worker = dlog.worker_pids()
    with pytest.raises(requests.RequestException):
        http.end(TID, pid, epoch, True)
    if point == "txn.after_prepare":
        dlog.wait_workers(exclude=first_worker)
        dlog.wait_ready(30)
        http = HttpTxn(dlog)
        assert http.describe(TID)["state"] == "CompleteCommit"
        http.wait_settled(T, PARTITIONS)
        assert [[v for _o, v in http.read(T, p)] for p in PARTITIONS] == [values[p] for p in PARTITIONS]
        assert http.group_offsets(GROUP) == BASELINE | TXN_OFFSETS
    else:
        deadline = time.monotonic() + 20
        while dlog.log_text().count(f"crash point {point} reached") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dlog.log_text().count(f"crash point {point} reached") >= 3, dlog.log_tail()
        assert Files(dlog.data_dir).txn_state(TID)[0] == "PrepareCommit"
    http = _full_crash_and_restart(dlog)
    check_outcome(dlog, http, pid, epoch, values, True)
    _final_integrity(dlog)
