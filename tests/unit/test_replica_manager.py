"""acks: acks=all refuses with NOT_ENOUGH_REPLICAS (writing nothing) while the ISR is smaller
than min.insync.replicas; acks=1 and acks=0 do not wait for followers."""
from __future__ import annotations

import contextlib
import os
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


def _spy_writes_and_syncs(server, monkeypatch) -> list[tuple]:
    """Records ("commit", file, durable) as each write transaction ends and ("sync", file,
    write lock held) for every ``sync_wal``, in order."""
    db = server.db
    events: list[tuple] = []
    write, sync_wal = db.write, db.sync_wal

    @contextlib.contextmanager
    def spy_write(engine, durable=True):
        with write(engine, durable) as conn:
            yield conn
        events.append(("commit", os.path.basename(engine.url.database), durable))

    def spy_sync(engine):
        events.append(("sync", os.path.basename(engine.url.database), db._locks[engine].locked()))
        sync_wal(engine)

    monkeypatch.setattr(db, "write", spy_write)
    monkeypatch.setattr(db, "sync_wal", spy_sync)
    return events


def test_a_followers_copy_is_synced_after_its_lock_and_before_the_leader_counts_it(server, create_topic,
                                                                                   produce, monkeypatch):
    """A follower's copy commits without waiting for the disk, then fdatasyncs its file's WAL
    with the lock released; the leader records the positions (and may pass the HW over the
    records) only after both followers synced."""
    create_topic("t", replication_factor=3)
    produce("t", [b"x"], acks=Acks.ALL)  # every replica has its log
    produce("t", [b"a", b"b", b"c"])  # acks=1: on the leader only
    topic = server.controller.topic("t")
    state = topic.partition(0)
    events = _spy_writes_and_syncs(server, monkeypatch)
    results = server.replica_manager.fetcher.fetch_round(topic, state)
    assert all(r.copied == 3 and r.high_watermark == 4 for r in results.values())
    leader = f"broker-{state.leader}.db"
    followers = [f"broker-{b}.db" for b in state.replicas if b != state.leader]
    copies = [e for e in events if e[0] == "commit" and e[1] in followers]
    assert sorted(copies) == sorted(("commit", f, False) for f in followers)
    syncs = [e for e in events if e[0] == "sync"]
    assert sorted(syncs) == sorted(("sync", f, False) for f in followers)  # no write lock held
    positions = events.index(("commit", leader, False))
    for f in followers:
        assert events.index(("commit", f, False)) < events.index(("sync", f, False)) < positions


def test_a_round_counting_records_another_step_copied_syncs_them_first(server, create_topic, produce,
                                                                       monkeypatch):
    """A step that finds its follower already holding the records (another process copied
    them and has not reported yet, so it may not have synced them either) fdatasyncs the
    follower's WAL before the leader records the position."""
    create_topic("t", replication_factor=3)
    produce("t", [b"x"], acks=Acks.ALL)
    produce("t", [b"a", b"b"])
    topic = server.controller.topic("t")
    state = topic.partition(0)
    fetcher = server.replica_manager.fetcher
    monkeypatch.setattr(fetcher, "_record_positions", lambda *a: None)  # copied, never reported
    fetcher.fetch_round(topic, state)
    monkeypatch.undo()
    assert server.replica_manager.offsets(topic, 0).high_watermark == 1
    events = _spy_writes_and_syncs(server, monkeypatch)
    results = fetcher.fetch_round(topic, state)
    assert all(r.copied == 0 and r.follower_leo == 3 and r.high_watermark == 3 for r in results.values())
    leader = f"broker-{state.leader}.db"
    followers = [f"broker-{b}.db" for b in state.replicas if b != state.leader]
    assert [e for e in events if e[0] == "commit"] == [("commit", leader, False)]  # no copy: positions only
    assert sorted(e for e in events if e[0] == "sync") == sorted(("sync", f, False) for f in followers)
    assert events[-1] == ("commit", leader, False)
