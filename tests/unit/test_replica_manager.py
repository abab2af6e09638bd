"""acks: acks=all refuses with NOT_ENOUGH_REPLICAS (writing nothing) while the ISR is smaller
than min.insync.replicas; acks=1 and acks=0 do not wait for followers."""
from __future__ import annotations

import threading
import time

import pytest

from service.errors import Errors, KafkaError
from service.types import Acks, Record


def _leo(server, topic_name, partition=0):
    return server.replica_manager.offsets(server.controller.topic(topic_name), partition).log_end_offset


def test_acks_all_with_isr_below_min_insync_writes_nothing(server, create_topic, shrink_isr, produce):
    create_topic("t", replication_factor=3)  # min.insync.replicas defaults to 2
    produce("t", [b"acked with acks=1"])
    topic = shrink_isr("t")
    assert len(topic.partitions[0].isr) == 1
    before = {b: o.log_end_offset for b, o in server.replica_manager.replica_offsets(topic.partitions[0]).items()}
    with pytest.raises(KafkaError) as e:
        produce("t", [b"x", b"y"], acks=Acks.ALL)
    assert e.value.error is Errors.NOT_ENOUGH_REPLICAS
    assert e.value.status == 503 and e.value.retriable
    after = {b: o.log_end_offset for b, o in server.replica_manager.replica_offsets(topic.partitions[0]).items()}
    assert after == before
    assert _leo(server, "t") == 1


def test_acks_1_still_works_with_a_shrunk_isr(server, create_topic, shrink_isr, produce):
    create_topic("t", replication_factor=3)
    shrink_isr("t")
    assert produce("t", [b"x"], acks=Acks.LEADER).first_offset == 0
    assert _leo(server, "t") == 1


def test_acks_all_on_rf1_is_acknowledged_and_visible(server, create_topic, produce, fetch):
    create_topic("t", replication_factor=1)
    info = produce("t", [b"a", b"b"], acks=Acks.ALL)
    assert (info.first_offset, info.last_offset) == (0, 1)
    o = server.replica_manager.offsets(server.controller.topic("t"), 0)
    assert o.high_watermark == 2
    assert [r.value for r in fetch("t", 0, 0).records] == [b"a", b"b"]


def test_acks_all_with_min_insync_1_and_isr_of_one(server, create_topic, shrink_isr, produce):
    create_topic("t", replication_factor=3, min_insync_replicas="1")
    shrink_isr("t")
    assert produce("t", [b"x"], acks=Acks.ALL).first_offset == 0


def test_acks_0_reports_nothing_and_appends_soon(server, create_topic, fetch):
    create_topic("t")
    topic = server.controller.topic("t")
    assert server.replica_manager.append_records(
        topic, {0: [Record(None, None, b"fire", None)]}, Acks.NONE) == {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _leo(server, "t") < 1:
        time.sleep(0.01)
    assert [r.value for r in fetch("t", 0, 0).records] == [b"fire"]


@pytest.mark.parametrize("text,acks", [("0", Acks.NONE), ("1", Acks.LEADER), ("all", Acks.ALL),
                                       ("-1", Acks.ALL), ("ALL", Acks.ALL), (-1, Acks.ALL)])
def test_acks_parse(text, acks):
    assert Acks.parse(text) is acks


@pytest.mark.parametrize("text", ["2", "", "none", "leader", "1.0"])
def test_acks_parse_refuses_other_values(text):
    with pytest.raises(KafkaError) as e:
        Acks.parse(text)
    assert e.value.error is Errors.INVALID_REQUIRED_ACKS and e.value.status == 400


def test_a_parallel_round_copies_to_both_followers_at_once(server, create_topic, produce):
    """A transaction marker's round (``parallel=True``) runs the followers' steps in two
    threads at the same time, and leaves the same logs and high watermark as a serial round."""
    create_topic("t", replication_factor=3)
    produce("t", [b"a", b"b", b"c"])
    topic = server.controller.topic("t")
    state = topic.partition(0)
    fetcher = server.replica_manager.fetcher
    inside: list[str] = []
    both_in = threading.Barrier(2, timeout=5)
    step = fetcher._step

    def recording_step(*args):
        inside.append(threading.current_thread().name)
        both_in.wait()  # a serial round would never get the second step here: BrokenBarrierError
        return step(*args)

    fetcher._step = recording_step
    try:
        results = fetcher.fetch_round(topic, state, parallel=True)
    finally:
        fetcher._step = step
    followers = [b for b in state.replicas if b != state.leader]
    assert len(set(inside)) == 2
    assert sorted(results) == sorted(followers)
    assert all(r.copied == 3 and r.follower_leo == 3 and r.high_watermark == 3 for r in results.values())
    offsets = server.replica_manager.replica_offsets(state)
    assert {b: o.log_end_offset for b, o in offsets.items()} == {b: 3 for b in state.replicas}
    assert server.replica_manager.offsets(topic, 0).high_watermark == 3
