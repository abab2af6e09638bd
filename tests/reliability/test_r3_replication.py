"""R3: replication under leader bounces, and two of three brokers down (reliability.md §6.3 R3,
Kafka's leader chase and log_dir_failure_test; kafka-semantics 1.D, 6.1).

While idempotent producers (acks=all) and an assigned consumer run, the nemesis bounces the
leader of partition 0 through the API (``:stop`` then ``:start``), chasing it each time. Then
two of the three brokers are stopped: once the ISR has shrunk below min.insync.replicas=2,
every acks=all produce must be refused with NOT_ENOUGH_REPLICAS and none acknowledged. The
brokers come back, rejoin the ISR (truncating where they diverge), and a fresh consumer reads
everything: no acknowledged record lost, none duplicated, no offset holding two values, and a
consumer's position never moving back.
"""
from __future__ import annotations

import random
import time

import pytest

from .queue import QueueResult, run_queue
from .test_r1_kill9_durability import _assert_durable
from .workload import IdempotentProducer, ValueSource, wait_until

ENV = {"DLOG_REPLICA_LAG_TIME_MAX_MS": "1500"}


def _isr_sizes(dlog, topic: str, partitions: int) -> list[int]:
    return [len(dlog.partition_state(topic, p)["isr"]) for p in range(partitions)]


def _two_down(run, dlog, topic: str, attempts: int, refused: dict):
    def phase(nemesis) -> None:
        # Every replica back in the ISR first, so that broker 0 can lead every partition.
        assert wait_until(lambda: min(_isr_sizes(dlog, topic, 3)) == 3, 60), _isr_sizes(dlog, topic, 3)
        down = [1, 2]
        for b in down:
            nemesis.stop_broker(b)
        # A stopped follower that is caught up leaves the ISR only once the leader's log end
        # moves past it for replica.lag.time.max.ms (Kafka's isCaughtUp): one write per
        # partition starts that clock. Those writes may be stored but are never acknowledged.
        primer = IdempotentProducer("primer", run.api(dlog), run.history, topic, [0, 1, 2], ValueSource(20_000_000),
                                    random.Random(run.seed), retry=False, max_batch=1, timeout_ms=1000)
        primed = [primer.send_one(p) for p in range(3)]
        assert wait_until(lambda: max(_isr_sizes(dlog, topic, 3)) == 1, 30), _isr_sizes(dlog, topic, 3)
        producer = IdempotentProducer("nr", run.api(dlog), run.history, topic, [0, 1, 2], ValueSource(10_000_000),
                                      random.Random(run.seed), retry=False, max_batch=5)
        kinds = [producer.send_one() for _ in range(attempts)]
        refused.update(kinds={k: kinds.count(k) for k in set(kinds)}, errors=dict(producer.errors),
                       acked=producer.acked + primer.acked, primed=primed, primer_errors=dict(primer.errors))
        for b in down:
            nemesis.start_broker(b)
        assert wait_until(lambda: min(_isr_sizes(dlog, topic, 3)) == 3, 60), _isr_sizes(dlog, topic, 3)
    return phase


def _r3(run, bounces: int, extra_faults: tuple[str, ...], attempts: int) -> None:
    dlog = run.service(env=ENV).start()
    dlog.create_topic("r3", partitions=3, replication_factor=3)
    refused: dict = {}
    started = time.monotonic()
    r: QueueResult = run_queue(run, dlog, "r3", producers=2, pollers=1, faults=("broker",) + extra_faults,
                               fault_count=2 * bounces, interval=(0.7, 1.5), min_acked=500,
                               before_final=_two_down(run, dlog, "r3", attempts, refused))
    run.report(acked=r.acked, nemesis=r.nemesis, two_down=refused, ends=r.ends,
               runtime_workload_s=round(time.monotonic() - started, 1))
    _assert_durable_bounces(run, r)
    assert refused["acked"] == 0 and refused["kinds"] == {"fail": attempts}, refused
    # NOT_ENOUGH_REPLICAS; or LEADER_NOT_AVAILABLE for a partition whose only live replica is
    # not in its ISR (no unclean election). Both are refusals before anything is written.
    assert "NOT_ENOUGH_REPLICAS" in refused["errors"], refused
    assert set(refused["errors"]) <= {"NOT_ENOUGH_REPLICAS", "LEADER_NOT_AVAILABLE"}, refused


def _assert_durable_bounces(run, r: QueueResult) -> None:
    run.assert_valid(r.results)
    assert all(r.dense.values()), f"offsets not dense from 0: {r.dense} ends {r.ends}"
    assert r.unexpected == [], r.unexpected[:10]
    assert run.stats.summary()["bad"] == [], run.stats.summary()
    assert r.log_errors == [], r.log_errors[:10]
    assert r.nemesis["faults"].get("stop-broker", 0) >= 1


def test_r3_leader_bounces_small(run):
    """PR size: 3 leader bounces, then two of three brokers down (10 refused produces)."""
    _r3(run, bounces=3, extra_faults=(), attempts=10)


@pytest.mark.slow
def test_r3_leader_bounces_full(run):
    """Full size: 10 bounces mixed with kill -9s, then two of three down (50 refused produces)."""
    _r3(run, bounces=10, extra_faults=("kill",), attempts=50)


assert _assert_durable  # shared oracle of R1 (imported for the docs' sake)
