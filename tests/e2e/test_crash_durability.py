"""kill -9 of the whole service during an acks=1 produce loop (reliability.md R2's acks=1 row).

Several client threads produce with ``acks=1`` (single- and multi-record requests, some spread
over partitions) while the whole process group is killed with SIGKILL at a random moment.
After each kill every ``.db`` file must pass ``PRAGMA integrity_check``; the service restarts
on the same data directory. At the end every acknowledged record must be at its reported
offset with its value, offsets dense from 0, and a record whose request got no answer may be
there or not, but never twice.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from .conftest import check_log, integrity_check, server_log_errors
from .produce_client import Producer

PARTITIONS = [0, 1, 2]


def _crash_loop(dlog, topic: str, kills: int, threads: int, seed: int, run_min: float, run_max: float) -> dict:
    rng = random.Random(seed)
    cid = dlog.cluster_id()
    producers = [Producer(dlog.url, cid, topic, f"c{i}", PARTITIONS, acks="1", max_batch=10,
                          mix_partitions=(i % 2 == 1), seed=seed * 100 + i, timeout=10) for i in range(threads)]
    integrity: list[dict] = []
    recovery: list[float] = []
    for round_ in range(kills):
        stop = threading.Event()
        workers = [threading.Thread(target=p.run, args=(stop,), kwargs={"pause_on_error": 0.01}, daemon=True)
                   for p in producers]
        before = sum(len(p.acked) for p in producers)
        try:
            for t in workers:
                t.start()
            time.sleep(rng.uniform(run_min, run_max))
            dlog.kill9()
        finally:
            stop.set()
            for t in workers:
                t.join(30)
        assert not any(t.is_alive() for t in workers), "a producer thread hangs after the kill"
        acked_in_round = sum(len(p.acked) for p in producers) - before
        assert acked_in_round > 0, f"round {round_}: nothing was acknowledged before the kill\n{dlog.log_tail()}"
        checks = integrity_check(dlog.data_dir)
        integrity.append(checks)
        assert checks and all(v == "ok" for v in checks.values()), checks
        started = time.monotonic()
        dlog.start()
        recovery.append(time.monotonic() - started)
    histories = [p.history() for p in producers]
    summary = check_log(dlog, topic, PARTITIONS, histories)
    summary["log_errors"] = server_log_errors(dlog)
    summary["recovery_s"] = recovery
    summary["files_checked"] = sorted(integrity[-1])
    summary["bad_answers"] = [b for h in histories for b in h["bad_answers"]]
    summary["statuses"] = {}
    for h in histories:
        for k, v in h["statuses"].items():
            summary["statuses"][k] = summary["statuses"].get(k, 0) + v
    return summary


def _assert_durable(summary: dict) -> None:
    assert summary["problems"] == {}, summary
    # acks=1 with no replication to wait for: a definite failure is a bug, so is a 5xx.
    assert summary["failed"] == 0, summary
    assert not [b for b in summary["bad_answers"] if not b.startswith("5")], summary["bad_answers"]
    assert not any(k.startswith("5") for k in summary["statuses"]), summary["statuses"]
    # Every stored value is acknowledged or was in flight at a kill: the oracle saw them all.
    assert summary["stored"] == summary["acked"] + summary["unknown_stored"], summary
    assert sum(summary["ends"].values()) == summary["stored"], summary
    assert {"controller.db", "broker-0.db", "broker-1.db", "broker-2.db"} <= set(summary["files_checked"])
    assert summary["log_errors"] == [], summary["log_errors"][:10]


def test_kill9_during_acks1_produce(dlog):
    """3 kills at 0.7-1.5 s into a 6-thread produce loop over 3 partitions."""
    dlog.create_topic("crash", partitions=3, replication_factor=1)
    started = time.monotonic()
    summary = _crash_loop(dlog, "crash", kills=3, threads=6, seed=7, run_min=0.7, run_max=1.5)
    elapsed = time.monotonic() - started
    print(f"\nkill -9 x3: {summary['acked']} acked, {summary['unknown']} unknown "
          f"({summary['unknown_stored']} of them stored), {summary['refused']} refused, ends {summary['ends']}, "
          f"restart-to-ready {['%.2f' % r for r in summary['recovery_s']]} s, {elapsed:.1f} s in all")
    _assert_durable(summary)


@pytest.mark.slow
def test_kill9_during_acks1_produce_many_times(dlog):
    """The full-size run: 15 kills at random 0.5-3 s into a 12-thread produce loop."""
    dlog.create_topic("crash-many", partitions=3, replication_factor=3)
    summary = _crash_loop(dlog, "crash-many", kills=15, threads=12, seed=11, run_min=0.5, run_max=3.0)
    print(f"\nkill -9 x15: {summary['acked']} acked, {summary['unknown']} unknown "
          f"({summary['unknown_stored']} stored), {summary['refused']} refused, ends {summary['ends']}, "
          f"max restart-to-ready {max(summary['recovery_s']):.2f} s")
    _assert_durable(summary)
