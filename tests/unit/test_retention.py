"""Retention (retention.ms, retention.bytes) driven by a MockClock, and removal of the logs of
deleted topics."""
from __future__ import annotations

import pytest

from service import log as unified_log
from service.errors import Errors, KafkaError
from service.types import Record


def _offsets(server, topic="t", partition=0):
    return server.replica_manager.offsets(server.controller.topic(topic), partition)


def test_retention_ms_deletes_old_records_and_advances_log_start(server, create_topic, produce, fetch, clock):
    create_topic("t", retention_ms="1000")
    produce("t", [b"old-0", b"old-1", b"old-2"])   # stamped now
    clock.advance(600)
    produce("t", [b"new-3", b"new-4"])             # stamped now + 600
    clock.advance(600)                             # old ones 1200 ms old, new ones 600 ms
    assert server.log_manager.apply_retention() == 3
    o = _offsets(server)
    assert (o.log_start_offset, o.log_end_offset, o.high_watermark) == (3, 5, 5)
    assert [(r.offset, r.value) for r in fetch("t", 0, 3).records] == [(3, b"new-3"), (4, b"new-4")]
    for below in (0, 2):
        with pytest.raises(KafkaError) as e:
            fetch("t", 0, below)
        assert e.value.error is Errors.OFFSET_OUT_OF_RANGE
    # offsets keep counting from the log end offset: retention never reuses an offset
    assert produce("t", [b"next"]).first_offset == 5


def test_retention_ms_uses_record_timestamps(server, create_topic, produce, clock):
    create_topic("t", retention_ms="1000")
    now = clock.milliseconds()
    produce("t", [Record(now - 5000, None, b"a", None), Record(now - 2000, None, b"b", None),
                  Record(now, None, b"c", None)])
    server.log_manager.apply_retention()
    assert _offsets(server).log_start_offset == 2


def test_retention_ms_can_empty_the_log(server, create_topic, produce, fetch, clock):
    create_topic("t", retention_ms="1000")
    produce("t", [b"a", b"b"])
    clock.advance(5000)
    server.log_manager.apply_retention()
    o = _offsets(server)
    assert (o.log_start_offset, o.log_end_offset) == (2, 2)
    assert fetch("t", 0, 2).records == []
    assert produce("t", [b"c"]).first_offset == 2


def test_nothing_is_deleted_before_retention_ms(server, create_topic, produce, clock):
    create_topic("t", retention_ms="1000")
    produce("t", [b"a", b"b"])
    clock.advance(999)
    assert server.log_manager.apply_retention() == 0
    assert _offsets(server).log_start_offset == 0


def test_retention_bytes_keeps_the_newest_within_the_limit(server, create_topic, produce, fetch):
    create_topic("t", retention_bytes="35", retention_ms="-1")
    produce("t", [f"record-{i:03d}".encode() for i in range(10)])  # 10 bytes each
    server.log_manager.apply_retention()
    o = _offsets(server)
    assert (o.log_start_offset, o.log_end_offset) == (7, 10)
    assert [r.value for r in fetch("t", 0, 7).records] == [b"record-007", b"record-008", b"record-009"]
    with pytest.raises(KafkaError) as e:
        fetch("t", 0, 6)
    assert e.value.error is Errors.OFFSET_OUT_OF_RANGE
    # a second pass has nothing more to do
    assert server.log_manager.apply_retention() == 0


def test_retention_bytes_counts_keys_and_headers(server, create_topic, produce):
    create_topic("t", retention_bytes="20", retention_ms="-1")
    produce("t", [Record(None, b"kkkkk", b"vvvvv", None),     # 10 bytes
                  Record(None, b"kkkkk", b"vvvvv", b"hhhhh"),  # 15 bytes
                  Record(None, None, b"vvvvv", None)])         # 5 bytes
    server.log_manager.apply_retention()
    assert _offsets(server).log_start_offset == 1  # 15 + 5 = 20 fit; 10 + 15 + 5 do not


def test_unlimited_retention_keeps_everything(server, create_topic, produce, clock):
    create_topic("t", retention_ms="-1", retention_bytes="-1")
    produce("t", [b"a" * 100] * 5)
    clock.advance(10 * 365 * 24 * 3600 * 1000)
    assert server.log_manager.apply_retention() == 0
    assert _offsets(server).log_start_offset == 0


def test_retention_applies_per_topic(server, create_topic, produce, clock):
    create_topic("short", retention_ms="1000")
    create_topic("long")  # broker default: 7 days
    produce("short", [b"a"])
    produce("long", [b"a"])
    clock.advance(60_000)
    server.log_manager.apply_retention()
    assert _offsets(server, "short").log_start_offset == 1
    assert _offsets(server, "long").log_start_offset == 0


def test_background_duty_applies_retention(server, create_topic, produce, clock):
    create_topic("t", retention_ms="1000")
    produce("t", [b"a", b"b"])
    clock.advance(server.config.log_retention_check_interval_ms + 1)
    assert server.background.run_once()
    assert _offsets(server).log_start_offset == 2


def _logs_of(server, topic_id):
    found = []
    for b in server.controller.broker_ids():
        with server.db.read(server.db.broker(b)) as conn:
            found += [row for row in unified_log.all_logs(conn) if row.topic_id == topic_id]
    return found


def test_delete_stray_logs_removes_a_deleted_topics_logs(server, create_topic, produce):
    gone = create_topic("gone", partitions=3)
    kept = create_topic("kept")
    for p in range(3):
        produce("gone", [b"x"], partition=p)
    produce("kept", [b"y"])
    assert len(_logs_of(server, gone.topic_id)) == 3
    server.controller.delete_topic("gone")
    assert server.log_manager.delete_stray_logs() == 3
    assert _logs_of(server, gone.topic_id) == []
    assert len(_logs_of(server, kept.topic_id)) == 1
    assert server.log_manager.delete_stray_logs() == 0


def test_recreated_topic_starts_empty(server, create_topic, produce, fetch):
    create_topic("t")
    produce("t", [b"old-1", b"old-2"])
    server.controller.delete_topic("t")
    server.log_manager.delete_stray_logs()
    create_topic("t")
    assert fetch("t", 0, 0).records == []
    assert produce("t", [b"new"]).first_offset == 0
    assert [r.value for r in fetch("t", 0, 0).records] == [b"new"]
