"""A partition's log through the ReplicaManager: dense offsets, exact round-trip of record
bytes, reads by offset with max_bytes, out-of-range offsets, timestamp types."""
from __future__ import annotations

import pytest

from service import log as unified_log
from service.errors import Errors, KafkaError
from service.types import Record


def _read_all(fetch, topic, partition=0, offset=0):
    return fetch(topic, partition, offset, 64 * 1024 * 1024).records


def test_offsets_are_dense_from_zero_across_batches(create_topic, produce, fetch):
    create_topic("t")
    infos = [produce("t", [b"x"] * n) for n in (1, 5, 3, 1)]
    assert [(i.first_offset, i.last_offset) for i in infos] == [(0, 0), (1, 5), (6, 8), (9, 9)]
    records = _read_all(fetch, "t")
    assert [r.offset for r in records] == list(range(10))


def test_partitions_have_independent_offsets(create_topic, produce, fetch):
    create_topic("t", partitions=3)
    produce("t", [b"a", b"b"], partition=0)
    info = produce("t", [b"c"], partition=2)
    assert info.first_offset == 0
    assert [r.value for r in _read_all(fetch, "t", 2)] == [b"c"]
    assert _read_all(fetch, "t", 1) == []


RECORDS = [
    Record(1_600_000_000_000, b"k1", b"v1", None),
    Record(1_600_000_000_001, None, b"value without key", None),
    Record(1_600_000_000_002, b"key without value", None, None),
    Record(1_600_000_000_003, None, None, None),
    Record(1_600_000_000_004, b"", b"", None),  # empty is not null
    Record(1_600_000_000_005, bytes(range(256)), b"\x00\xff\x00" * 100, None),
    Record(0, "ünïcödé".encode(), "🦄".encode(), b'[["h1","aGVsbG8="],["h2",null]]'),
]


def test_records_round_trip_exactly(create_topic, produce, fetch):
    create_topic("t")
    produce("t", RECORDS)
    got = _read_all(fetch, "t")
    assert [(r.timestamp, r.key, r.value, r.headers) for r in got] == [tuple(r) for r in RECORDS]
    assert got[4].key == b"" and got[4].key is not None
    assert got[3].key is None and got[3].value is None


def test_missing_timestamp_is_the_append_time(create_topic, produce, fetch, clock):
    create_topic("t")
    clock.advance(12345)
    info = produce("t", [Record(None, None, b"x", None), Record(5, None, b"y", None)])
    assert info.timestamps == (clock.milliseconds(), 5)
    assert [r.timestamp for r in _read_all(fetch, "t")] == [clock.milliseconds(), 5]


def test_log_append_time_overrides_the_producer_timestamp(create_topic, produce, fetch, clock):
    create_topic("t", message_timestamp_type="LogAppendTime")
    info = produce("t", [Record(5, None, b"x", None), Record(None, None, b"y", None)])
    now = clock.milliseconds()
    assert info.timestamps == (now, now)
    assert [r.timestamp for r in _read_all(fetch, "t")] == [now, now]


def test_create_time_keeps_the_producer_timestamp(create_topic, produce, fetch):
    create_topic("t", message_timestamp_type="CreateTime")
    produce("t", [Record(5, None, b"x", None)])
    assert _read_all(fetch, "t")[0].timestamp == 5


def test_read_from_an_offset(create_topic, produce, fetch):
    create_topic("t")
    produce("t", [str(i).encode() for i in range(10)])
    records = _read_all(fetch, "t", offset=7)
    assert [(r.offset, r.value) for r in records] == [(7, b"7"), (8, b"8"), (9, b"9")]


def test_max_bytes_returns_at_least_one_record(create_topic, produce, fetch):
    create_topic("t")
    produce("t", [b"x" * 100, b"y" * 100, b"z" * 100])
    one = fetch("t", 0, 0, max_bytes=1).records
    assert [r.offset for r in one] == [0]  # bigger than max_bytes, still returned (KIP-74)
    assert [r.offset for r in fetch("t", 0, 0, max_bytes=199).records] == [0]
    assert [r.offset for r in fetch("t", 0, 0, max_bytes=200).records] == [0, 1]
    assert [r.offset for r in fetch("t", 0, 1, max_bytes=10_000).records] == [1, 2]


def test_read_at_log_end_is_empty_and_beyond_is_out_of_range(create_topic, produce, fetch):
    create_topic("t")
    assert fetch("t", 0, 0).records == []  # empty log: offset 0 is the LEO
    with pytest.raises(KafkaError) as e:
        fetch("t", 0, 1)
    assert e.value.error is Errors.OFFSET_OUT_OF_RANGE
    produce("t", [b"a", b"b"])
    result = fetch("t", 0, 2)
    assert result.records == [] and result.log_end_offset == 2 and result.high_watermark == 2
    for beyond in (3, 1000):
        with pytest.raises(KafkaError) as e:
            fetch("t", 0, beyond)
        assert e.value.error is Errors.OFFSET_OUT_OF_RANGE
        assert e.value.status == 416


def test_unknown_partition(create_topic, fetch, produce):
    create_topic("t", partitions=2)
    for p in (2, -1):
        with pytest.raises(KafkaError) as e:
            fetch("t", p, 0)
        assert e.value.error is Errors.UNKNOWN_TOPIC_OR_PARTITION
        with pytest.raises(KafkaError) as e:
            produce("t", [b"x"], partition=p)
        assert e.value.error is Errors.UNKNOWN_TOPIC_OR_PARTITION


def test_record_larger_than_max_message_bytes_is_refused_whole(create_topic, produce, fetch, server):
    create_topic("t", max_message_bytes="10")
    produce("t", [b"0123456789"])  # exactly the limit: accepted
    with pytest.raises(KafkaError) as e:
        produce("t", [b"ok", b"0123456789X", b"ok"])
    assert e.value.error is Errors.MESSAGE_TOO_LARGE and e.value.status == 413
    offsets = server.replica_manager.offsets(server.controller.topic("t"), 0)
    assert offsets.log_end_offset == 1  # nothing of the refused batch was written
    assert [r.value for r in _read_all(fetch, "t")] == [b"0123456789"]


def test_key_and_headers_count_towards_max_message_bytes(create_topic, produce):
    create_topic("t", max_message_bytes="10")
    with pytest.raises(KafkaError) as e:
        produce("t", [Record(None, b"kkkkkk", b"vvvvv", None)])
    assert e.value.error is Errors.MESSAGE_TOO_LARGE


def test_records_persist_across_restart(data_dir, clock, create_topic, produce, server):
    from service.config import Config
    from service.server import DlogServer

    create_topic("t")
    produce("t", RECORDS)
    server.shut_down()
    again = DlogServer(Config(data_dir=data_dir), clock)
    again.start_up(background=False)
    try:
        topic = again.controller.topic("t")
        got = again.replica_manager.fetch(topic, 0, 0, 1 << 20).records
        assert [(r.timestamp, r.key, r.value, r.headers) for r in got] == [tuple(r) for r in RECORDS]
    finally:
        again.shut_down()


@pytest.mark.parametrize("count", [1, 2, 3, 100, 255, 256, 257, 700])
def test_batches_of_any_size_keep_every_record_in_order_on_every_replica(create_topic, produce, fetch, server,
                                                                         count):
    """Records are inserted a few multi-row statements at a time (chunks of a power of two,
    at most 256): every size lands whole, in order, on the leader and on the followers."""
    topic = create_topic("t", replication_factor=3)
    produce("t", [b"first"])
    records = [Record(1_600_000_000_000 + i, str(i).encode(), b"v%d" % i, None) for i in range(count)]
    info = produce("t", records)
    assert (info.first_offset, info.last_offset) == (1, count)
    state = topic.partition(0)
    while any(server.replica_manager.fetcher.fetch_round(topic, state).values()) and \
            server.replica_manager.offsets(topic, 0).high_watermark < count + 1:
        pass
    got = _read_all(fetch, "t")
    assert [(r.offset, r.timestamp, r.key, r.value) for r in got[1:]] == \
        [(i + 1, r.timestamp, r.key, r.value) for i, r in enumerate(records)]
    for broker_id in state.replicas:
        with server.db.read(server.db.broker(broker_id)) as conn:
            log_state = unified_log.load(conn, state.topic_id, 0)
            copy = unified_log.read(conn, log_state, 1, 64 * 1024 * 1024, max_offset=count + 1).records
        assert [(r.offset, r.timestamp, r.key, r.value) for r in copy] == \
            [(r.offset, r.timestamp, r.key, r.value) for r in got[1:]], broker_id
