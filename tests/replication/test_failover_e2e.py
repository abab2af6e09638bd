"""Replication and failover with real processes, over HTTP (the replication issue's tests).

Each test runs ``dlog serve`` (gunicorn, 2 workers) in its own process group and stops and
starts simulated brokers through the API; kill -9 is a SIGKILL of the whole group.
"""
from __future__ import annotations

import sqlite3
import threading
import time

from tests.e2e.conftest import DlogProcess, b64, dlog_factory, integrity_check  # noqa: F401 (fixture)

LAG = {"DLOG_REPLICA_LAG_TIME_MAX_MS": "1000"}


def _start(dlog_factory, **kw) -> DlogProcess:
    kw.setdefault("env", LAG)
    return dlog_factory(**kw).start()


def _broker(d: DlogProcess, broker_id: int, action: str) -> None:
    r = d.post(f"/v3/clusters/{d.cluster_id_cached()}/brokers/{broker_id}:{action}")
    assert r.status_code == 200, r.text


def _produce(d: DlogProcess, topic: str, value: str, acks: str, timeout_ms: int = 5000):
    status, reports = d.produce_v3(topic, [{"partition_id": 0, "value": {"type": "STRING", "data": value}}],
                                   acks=acks) if timeout_ms is None else _produce_timeout(d, topic, value, acks,
                                                                                          timeout_ms)
    return status, reports[0]


def _produce_timeout(d, topic, value, acks, timeout_ms):
    import json

    r = d.post(f"/v3/clusters/{d.cluster_id_cached()}/topics/{topic}/records",
               params={"acks": acks, "timeout_ms": timeout_ms},
               data=json.dumps({"partition_id": 0, "value": {"type": "STRING", "data": value}}),
               headers={"Content-Type": "application/json"})
    return r.status_code, [r.json()] if r.text.strip() and "\r\n" not in r.text.strip() else \
        [__import__("json").loads(x) for x in r.text.split("\r\n") if x.strip()]


def _values(d: DlogProcess, topic: str) -> list[tuple[int, str]]:
    import base64

    d.wait_high_watermark(topic, 0, timeout=20)
    return [(r["offset"], base64.b64decode(r["value"]).decode()) for r in d.read_partition(topic, 0)]


def _replica_values(d: DlogProcess, broker_id: int, topic: str) -> list[tuple[int, bytes]]:
    """What one broker file holds for the topic's partition 0 (read directly, read-only)."""
    con = sqlite3.connect(f"file:{d.data_dir / f'broker-{broker_id}.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT r.offset, r.value FROM record r JOIN log l ON l.log_id = r.log_id "
                           "WHERE l.topic_name = ? AND l.partition_id = 0 AND r.is_control = 0 ORDER BY r.offset",
                           (topic,)).fetchall()
    finally:
        con.close()


def _partition(d: DlogProcess, topic: str) -> dict:
    return d.partition_state(topic, 0)


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_acks_1_record_lost_after_failover_and_truncated_on_return(dlog_factory):
    """The textbook case, end to end: acks=1, followers stopped, leader stopped, a follower
    elected; the acknowledged record is gone and the old leader truncates it on return."""
    d = _start(dlog_factory)
    d.create_topic("book", 1, 3)
    assert _produce(d, "book", "committed", "all")[0] == 200
    p = _partition(d, "book")
    leader, followers = p["leader_id"], [b for b in p["replica_ids"] if b != p["leader_id"]]
    for f in followers:
        _broker(d, f, "stop")
    status, report = _produce(d, "book", "acked-then-lost", "1")
    assert status == 200 and report["offset"] == 1
    _broker(d, leader, "stop")
    assert _partition(d, "book")["leader_id"] is None  # no live ISR member: offline, and it says so
    _broker(d, followers[0], "start")
    p = _wait(lambda: _partition(d, "book") if _partition(d, "book")["leader_id"] == followers[0] else None,
              what="the follower's election")
    assert p["leader_epoch"] >= 2
    _broker(d, followers[1], "start")
    assert _produce(d, "book", "after-failover", "all")[0] == 200
    _broker(d, leader, "start")
    assert _values(d, "book") == [(0, "committed"), (1, "after-failover")]
    _wait(lambda: _replica_values(d, leader, "book") == [(0, b"committed"), (1, b"after-failover")],
          what="the old leader's truncation and catch-up")
    assert set(integrity_check(d.data_dir).values()) == {"ok"}


def test_acks_all_loses_nothing_acknowledged_in_the_same_sequence(dlog_factory):
    """The same sequence with acks=all, RF=3, min ISR 2: the produce is not acknowledged
    (it times out: unknown outcome), and every acknowledged record survives. The default lag
    time (10 s) keeps the stopped followers in the ISR meanwhile, as in the acks=1 case."""
    d = _start(dlog_factory, env={})
    d.create_topic("safe", 1, 3)
    acked = []
    for i in range(5):
        status, report = _produce(d, "safe", f"v{i}", "all")
        assert status == 200
        acked.append((report["offset"], f"v{i}"))
    p = _partition(d, "safe")
    leader, followers = p["leader_id"], [b for b in p["replica_ids"] if b != p["leader_id"]]
    for f in followers:
        _broker(d, f, "stop")
    status, report = _produce(d, "safe", "unacknowledged", "all", timeout_ms=1500)
    assert status in (503, 504), report  # REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS: never a success
    _broker(d, leader, "stop")
    _broker(d, followers[0], "start")
    _broker(d, followers[1], "start")
    _wait(lambda: _partition(d, "safe")["leader_id"] in followers, what="a new leader")
    assert [v for v in _values(d, "safe") if v[1] != "unacknowledged"] == acked
    _broker(d, leader, "start")


def test_two_of_three_brokers_down_refuses_acks_all_and_writes_nothing(dlog_factory):
    d = _start(dlog_factory)
    d.create_topic("quorum", 1, 3)
    assert _produce(d, "quorum", "first", "all")[0] == 200
    p = _partition(d, "quorum")
    followers = [b for b in p["replica_ids"] if b != p["leader_id"]]
    for f in followers:
        _broker(d, f, "stop")
    assert _produce(d, "quorum", "nudge", "1")[0] == 200  # the followers now lag behind
    _wait(lambda: len(_partition(d, "quorum")["isr"]) == 1, what="the ISR to shrink by lag")
    leo = _partition(d, "quorum")["log_end_offset"]
    status, report = _produce(d, "quorum", "refused", "all")
    assert status == 503 and report["kafka_error"] == "NOT_ENOUGH_REPLICAS", report
    assert _partition(d, "quorum")["log_end_offset"] == leo
    for f in followers:
        _broker(d, f, "start")
    _wait(lambda: len(_partition(d, "quorum")["isr"]) == 3, what="the followers to rejoin the ISR")
    assert "refused" not in [v for _o, v in _values(d, "quorum")]


def test_kill_9_during_acks_all_loop_keeps_every_acknowledged_record_once(dlog_factory):
    d = _start(dlog_factory)
    d.create_topic("crash", 1, 3)
    acked: dict[int, str] = {}
    unknown: set[str] = set()
    stop = threading.Event()

    def loop(n: int) -> None:
        import requests

        s = requests.Session()
        i = 0
        while not stop.is_set():
            value = f"c{n}-{i}"
            i += 1
            try:
                status, reports = d.produce_v3("crash", [{"partition_id": 0, "value": {"type": "STRING",
                                                                                      "data": value}}],
                                               acks="all", session=s, timeout=10)
            except Exception:
                unknown.add(value)
                time.sleep(0.05)
                continue
            if status == 200 and reports[0].get("error_code") == 200:
                acked[reports[0]["offset"]] = value
            else:
                unknown.add(value)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    d.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    assert acked, "nothing was acknowledged before the kill"
    assert set(integrity_check(d.data_dir).values()) == {"ok"}
    d.start()
    stored = _values(d, "crash")
    offsets = [o for o, _v in stored]
    assert offsets == list(range(len(offsets))), "offsets must be gapless"
    by_offset = dict(stored)
    for offset, value in acked.items():
        assert by_offset.get(offset) == value, f"acknowledged {value} at {offset} is missing"
    values = [v for _o, v in stored]
    assert len(values) == len(set(values)), "no record may be stored twice"
    assert set(values) <= set(acked.values()) | unknown


def test_unclean_election_truncates_the_diverged_log_never_merges(dlog_factory):
    d = _start(dlog_factory)
    d.create_topic("unclean", 1, 3, {"unclean.leader.election.enable": "true", "min.insync.replicas": "1"})
    assert _produce(d, "unclean", "a", "all")[0] == 200
    p = _partition(d, "unclean")
    leader, followers = p["leader_id"], [b for b in p["replica_ids"] if b != p["leader_id"]]
    for f in followers:
        _broker(d, f, "stop")
    assert _produce(d, "unclean", "only-on-old-leader", "1")[0] == 200
    _wait(lambda: _partition(d, "unclean")["isr"] == [leader], what="the ISR to shrink to the leader")
    _broker(d, leader, "stop")
    _broker(d, followers[0], "start")
    _wait(lambda: _partition(d, "unclean")["leader_id"] == followers[0], what="the unclean election")
    assert _partition(d, "unclean")["isr"] == [followers[0]]
    assert _produce(d, "unclean", "new-history", "1")[0] == 200
    _broker(d, leader, "start")
    _broker(d, followers[1], "start")
    expected = [(0, b"a"), (1, b"new-history")]
    for b in (leader, *followers):
        _wait(lambda b=b: _replica_values(d, b, "unclean") == expected, what=f"broker {b} to converge")


def _lease_holder(d: DlogProcess) -> str | None:
    con = sqlite3.connect(f"file:{d.data_dir / 'controller.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT holder FROM lease").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def test_background_duties_move_to_another_worker_after_kill_9_of_the_lease_holder(dlog_factory):
    d = _start(dlog_factory, env={**LAG, "DLOG_LEASE_DURATION_MS": "1500"})
    holder = _wait(lambda: _lease_holder(d), what="a lease holder")
    holder_pid = int(holder.split("-")[0])
    assert holder_pid in d.worker_pids()
    import os
    import signal

    os.kill(holder_pid, signal.SIGKILL)
    new = _wait(lambda: (h := _lease_holder(d)) and not h.startswith(f"{holder_pid}-") and h, timeout=15,
                what="another worker to take the lease")
    assert int(new.split("-")[0]) != holder_pid
    # The duties run again: a stopped follower leaves the ISR by lag.
    d.create_topic("duty", 1, 3)
    p = _partition(d, "duty")
    follower = [b for b in p["replica_ids"] if b != p["leader_id"]][0]
    _broker(d, follower, "stop")
    _produce(d, "duty", "x", "1")
    _wait(lambda: follower not in _partition(d, "duty")["isr"], what="the ISR shrink duty")
