"""R1: acks=all idempotent produce under repeated kill -9 of the whole service (reliability.md
§6.3 R1; Kafka's replication_test hard_bounce with the whole service as the "leader").

3 brokers, one topic of 3 partitions, RF 3, min.insync.replicas 2. Idempotent producers send
batches with acks=all and retry indefinite answers with the same sequences; one assigned
consumer polls concurrently; the nemesis kills the process group at seeded 1-4 s intervals and
restarts it, checking every file after each kill. Then a fresh consumer reads everything.

Oracle: the checker finds no lost, unseen, duplicated or moved value, no inconsistent
offsets, no non-monotonic send or poll, no poll skip; raw offsets are gapless from 0; no
answer was a 500 or "database is locked", and no retry met OUT_OF_ORDER_SEQUENCE_NUMBER.
"""
from __future__ import annotations

import pytest

from .nemesis import FAULTS
from .queue import QueueResult, run_queue

ALLOWED_LOG = ("was sent SIGKILL",)


def _assert_durable(run, r: QueueResult, need_kill: bool = True) -> None:
    run.assert_valid(r.results)
    assert all(r.dense.values()), f"offsets not dense from 0: {r.dense} ends {r.ends}"
    assert r.unexpected == [], r.unexpected[:10]
    assert run.stats.summary()["bad"] == [], run.stats.summary()
    assert [line for line in r.log_errors if not any(a in line for a in ALLOWED_LOG)] == [], r.log_errors[:10]
    assert r.nemesis["faults"].get("kill", 0) >= 1 or not need_kill


def _r1(run, kills: int, interval, min_acked: int, producers: int, max_batch: int = 10) -> None:
    dlog = run.service().start()
    dlog.create_topic("r1", partitions=3, replication_factor=3)
    r = run_queue(run, dlog, "r1", producers=producers, pollers=1, faults=("kill",), fault_count=kills,
                  interval=interval, min_acked=min_acked, max_batch=max_batch)
    run.report(acked=r.acked, nemesis=r.nemesis, producers=r.producers, ends=r.ends)
    _assert_durable(run, r)


def test_r1_kill9_small(run):
    """PR size: 3 kills at 1-2.5 s intervals, 2 producers."""
    _r1(run, kills=3, interval=(1.0, 2.5), min_acked=1000, producers=2)


def test_mixed_faults_small(run):
    """Every nemesis fault in one seeded schedule (R10's nemesis on R1's workload): kill -9 of
    the group, a worker kill, SIGSTOP/SIGCONT of the group, a worker pause, leader bounces."""
    dlog = run.service(env={"DLOG_REPLICA_LAG_TIME_MAX_MS": "2000"}).start()
    dlog.create_topic("mixed", partitions=3, replication_factor=3)
    r = run_queue(run, dlog, "mixed", producers=2, pollers=1, faults=FAULTS, fault_count=8, interval=(0.7, 1.5),
                  min_acked=1000)
    run.report(acked=r.acked, nemesis=r.nemesis, producers=r.producers, ends=r.ends)
    _assert_durable(run, r, need_kill=False)
    assert r.nemesis["total"] == 8


@pytest.mark.slow
def test_mixed_faults_full(run):
    """Full size: 60 faults of every kind at 1-3 s intervals, 3 producers, 2 consumers."""
    dlog = run.service(env={"DLOG_REPLICA_LAG_TIME_MAX_MS": "2000"}).start()
    dlog.create_topic("mixed", partitions=3, replication_factor=3)
    r = run_queue(run, dlog, "mixed", producers=3, pollers=2, faults=FAULTS, fault_count=60, interval=(1.0, 3.0),
                  min_acked=20000, max_batch=20)
    run.report(acked=r.acked, nemesis=r.nemesis, producers=r.producers, ends=r.ends)
    _assert_durable(run, r, need_kill=False)


@pytest.mark.slow
def test_r1_kill9_full(run):
    """Full size: 20 kills at random 1-4 s intervals, until at least 50,000 records are acked."""
    _r1(run, kills=20, interval=(1.0, 4.0), min_acked=50000, producers=3, max_batch=50)
