"""Idempotent producers (kafka-semantics.md section 2 and scenarios 7.9-7.15), in one process."""
from __future__ import annotations

from service.errors import Errors, KafkaError
from service.log import LogAppendInfo
from service.producer_state import ProducerBatch
from service.types import Acks, Record


def _topic(cluster, partitions=1):
    cluster.controller.create_topic("t", partitions, 3)
    return cluster.server.transaction_coordinator.handle_init_producer_id().producer_id


def _send(cluster, pid, seq, count=1, epoch=0, partition=0, acks=Acks.ALL, tag=b"v"):
    records = [Record(None, None, tag + b"%d" % (seq + i), None) for i in range(count)]
    return cluster.rm.append_records(cluster.topic(), {partition: records}, acks, 2000,
                                     {partition: ProducerBatch(pid, epoch, seq)})[partition]


def _leo(cluster):
    return cluster.leader_offsets().log_end_offset


def test_producer_ids_are_unique_and_start_at_epoch_zero(cluster):
    coordinator = cluster.server.transaction_coordinator
    ids = {coordinator.handle_init_producer_id().producer_id for _ in range(50)}
    assert len(ids) == 50
    assert coordinator.handle_init_producer_id().producer_epoch == 0


def test_duplicate_retry_returns_original_offsets_and_writes_nothing(cluster):
    """7.9."""
    pid = _topic(cluster)
    first = _send(cluster, pid, 0, 5)
    again = _send(cluster, pid, 0, 5)
    assert isinstance(again, LogAppendInfo) and again.duplicate
    assert (again.first_offset, again.last_offset) == (first.first_offset, first.last_offset) == (0, 4)
    assert again.timestamps == first.timestamps
    assert _leo(cluster) == 5


def test_retry_within_the_last_five_batches_but_not_older(cluster):
    """7.10, and the regression of redpanda#3039: a genuine retry is deduplicated, never
    answered OUT_OF_ORDER_SEQUENCE_NUMBER (which makes real clients duplicate)."""
    pid = _topic(cluster)
    for seq in range(5):
        assert _send(cluster, pid, seq).first_offset == seq
    retry = _send(cluster, pid, 2)
    assert retry.duplicate and retry.first_offset == 2
    assert _send(cluster, pid, 5).first_offset == 5
    old = _send(cluster, pid, 0)
    assert isinstance(old, KafkaError) and old.error is Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _leo(cluster) == 6


def test_partial_overlap_is_not_a_duplicate(cluster):
    pid = _topic(cluster)
    _send(cluster, pid, 0, 3)
    overlap = _send(cluster, pid, 1, 3)
    assert isinstance(overlap, KafkaError) and overlap.error is Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _leo(cluster) == 3


def test_sequence_gap_is_refused_then_the_next_sequence_accepted(cluster):
    """7.11."""
    pid = _topic(cluster)
    _send(cluster, pid, 0, 5)
    gap = _send(cluster, pid, 6)
    assert isinstance(gap, KafkaError) and gap.error is Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _leo(cluster) == 5
    assert _send(cluster, pid, 5).first_offset == 5


def test_stale_epoch_and_new_epoch_rules(cluster):
    """7.12."""
    pid = _topic(cluster)
    _send(cluster, pid, 0, epoch=3)
    stale = _send(cluster, pid, 1, epoch=2)
    assert isinstance(stale, KafkaError) and stale.error is Errors.INVALID_PRODUCER_EPOCH
    bad_start = _send(cluster, pid, 5, epoch=4)
    assert isinstance(bad_start, KafkaError) and bad_start.error is Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _send(cluster, pid, 0, epoch=4).first_offset == 1
    assert _leo(cluster) == 2


def test_sequence_wraps_at_int32_max(cluster):
    """7.13."""
    pid = _topic(cluster)
    _send(cluster, pid, 2147483646)  # a new producer may start anywhere (2.12a)
    wrapped = _send(cluster, pid, 2147483647, 2)
    assert isinstance(wrapped, LogAppendInfo) and not wrapped.duplicate
    assert _send(cluster, pid, 1).first_offset == 3
    assert _send(cluster, pid, 2147483647, 2).duplicate
    # every replica stores each record's own sequence, wrapped as Kafka's incrementSequence
    cluster.replicate()
    for broker_id in cluster.state().replicas:
        with cluster.server.db.read(cluster.server.db.broker(broker_id)) as conn:
            stored = [r[0] for r in conn.exec_driver_sql('SELECT sequence FROM record ORDER BY "offset"')]
        assert stored == [2147483646, 2147483647, 0, 1], broker_id


def test_dedup_survives_failover(cluster):
    """7.14: the new leader has the producer state its followers replicated."""
    pid = _topic(cluster)
    first = _send(cluster, pid, 0, 5)
    old_leader = cluster.state().leader
    cluster.controller.stop_broker(old_leader)
    assert cluster.state().leader != old_leader
    again = _send(cluster, pid, 0, 5)
    assert isinstance(again, LogAppendInfo) and again.duplicate and again.first_offset == first.first_offset
    assert _send(cluster, pid, 5).first_offset == 5


def test_dedup_survives_restart(cluster, tmp_path):
    from service.server import DlogServer

    pid = _topic(cluster)
    _send(cluster, pid, 0, 2)
    cluster.server.shut_down()
    restarted = DlogServer(cluster.server.config, cluster.clock)
    restarted.start_up(background=False)
    try:
        topic = restarted.controller.topic("t")
        again = restarted.replica_manager.append_records(
            topic, {0: [Record(None, None, b"x", None)] * 2}, Acks.ALL, 2000, {0: ProducerBatch(pid, 0, 0)})[0]
        assert again.duplicate and again.first_offset == 0
    finally:
        restarted.shut_down()


def test_truncation_rebuilds_producer_state(cluster):
    """A batch truncated away after failover is not in the producer state any more: its
    retry is appended (it was never committed), and sequences continue from what remains."""
    pid = _topic(cluster)
    assert _send(cluster, pid, 0).first_offset == 0
    leader = cluster.state().leader
    followers = [b for b in cluster.state().replicas if b != leader]
    for f in followers:
        cluster.controller.stop_broker(f)
    _send(cluster, pid, 1, acks=Acks.LEADER, tag=b"lost")  # only on the old leader
    cluster.controller.stop_broker(leader)
    cluster.controller.start_broker(followers[0])
    cluster.controller.start_broker(followers[1])
    cluster.controller.start_broker(leader)
    cluster.replicate()
    retry = _send(cluster, pid, 1, tag=b"retry")
    assert isinstance(retry, LogAppendInfo) and not retry.duplicate and retry.first_offset == 1
    cluster.replicate()
    for b in cluster.state().replicas:
        assert cluster.values(b) == [(0, b"v0"), (1, b"retry1")], b


def test_expired_producer_accepts_any_sequence(cluster):
    """7.15: the documented limitation after producer.id.expiration.ms."""
    pid = _topic(cluster)
    cluster.rm.append_records(cluster.topic(), {0: [Record(cluster.clock.milliseconds(), None, b"a", None)]},
                              Acks.ALL, 2000, {0: ProducerBatch(pid, 0, 0)})
    cluster.clock.advance(cluster.server.config.producer_id_expiration_ms + 1)
    assert cluster.server.log_manager.remove_expired_producers() >= 1
    assert _send(cluster, pid, 17).first_offset == 1


def test_plain_and_idempotent_producers_share_a_partition(cluster):
    pid = _topic(cluster)
    cluster.produce(b"plain")
    assert _send(cluster, pid, 0).first_offset == 1
    cluster.produce(b"plain2")
    assert _send(cluster, pid, 0).duplicate
