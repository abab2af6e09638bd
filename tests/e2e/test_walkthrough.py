"""The README walkthrough as a test, against a real ``dlog serve`` over real HTTP.

Start the service, create ``orders`` (3 partitions, RF 3), produce in the v3 shape and in the
v2 json and binary shapes with the README's default acks, read back through the stateless read
(binary and json Accept); then ``dlog db upgrade`` on the existing directory changes nothing,
and the data and the cluster id survive a restart. Finally kill -9 one gunicorn worker during
a produce loop: the service keeps answering, the master starts a new worker, and no
acknowledged record is lost.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from .conftest import BINARY_V2, DLOG, JSON, JSON_V2, b64, check_log, server_log_errors, unb64
from .produce_client import Producer

V2_JSON_CT = "application/vnd.kafka.json.v2+json"
V2_BINARY_CT = "application/vnd.kafka.binary.v2+json"


def _dump(data_dir: Path) -> dict[str, str]:
    """Every .db file's full SQL dump (schema and rows)."""
    dumps = {}
    for path in sorted(data_dir.glob("*.db")):
        con = sqlite3.connect(str(path))
        try:
            dumps[path.name] = "\n".join(con.iterdump())
        finally:
            con.close()
    return dumps


def _read_all(dlog, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    out = {}
    for p in range(partitions):
        dlog.wait_high_watermark(topic, p)
        out[p] = [(r["offset"], unb64(r["key"]), unb64(r["value"])) for r in dlog.read_partition(topic, p)]
    return out


def test_readme_walkthrough(dlog_factory):
    dlog = dlog_factory().start()
    url = dlog.url
    # Like curl in the README: one connection per request (no kept-alive connection to
    # hold a worker's graceful exit).
    http = requests.Session()
    http.headers["Connection"] = "close"

    # The cluster id, as the README's first line gets it; /health/ready agrees.
    r = http.get(f"{url}/v3/clusters", timeout=10)
    assert r.status_code == 200
    cid = r.json()["data"][0]["cluster_id"]
    assert len(cid) == 22
    ready = http.get(f"{url}/health/ready", timeout=10).json()
    assert ready["status"] == "ready" and ready["cluster_id"] == cid
    assert set(ready["brokers"].values()) == {"online"} and len(ready["brokers"]) == 3

    # Create a topic with 3 partitions, each replicated on the 3 brokers.
    r = http.post(f"{url}/v3/clusters/{cid}/topics", headers={"Content-Type": JSON}, timeout=10,
                  data=json.dumps({"topic_name": "orders", "partitions_count": 3, "replication_factor": 3}))
    assert r.status_code == 201, r.text
    assert (r.json()["topic_name"], r.json()["partitions_count"], r.json()["replication_factor"]) == ("orders", 3, 3)

    expected: dict[tuple[int, int], tuple[bytes | None, bytes]] = {}  # (partition, offset) -> (key, value)

    # Produce in the v3 shape: concatenated records, one report per record (default acks).
    r = http.post(f"{url}/v3/clusters/{cid}/topics/orders/records", headers={"Content-Type": JSON}, timeout=30,
                  data='{"key": {"type": "STRING", "data": "alice"}, "value": {"type": "JSON", "data": {"total": 42}}}\n'
                       '         {"partition_id": 0, "value": {"type": "BINARY", "data": "aGVsbG8="}}')
    assert r.status_code == 200, r.text
    reports = [json.loads(line) for line in r.text.split("\r\n") if line.strip()]
    assert len(reports) == 2 and all(x["error_code"] == 200 for x in reports), reports
    assert reports[0]["key"] == {"type": "STRING", "size": 5} and reports[0]["value"] == {"type": "JSON", "size": 12}
    assert reports[1]["partition_id"] == 0 and reports[1]["value"] == {"type": "BINARY", "size": 5}
    expected[(reports[0]["partition_id"], reports[0]["offset"])] = (b"alice", b'{"total":42}')
    expected[(0, reports[1]["offset"])] = (None, b"hello")

    # Produce in the v2 shapes: json embedded format to the topic, binary to partition 0.
    r = http.post(f"{url}/topics/orders", headers={"Content-Type": V2_JSON_CT}, timeout=30,
                  data=json.dumps({"records": [{"key": "bob", "value": {"total": 7}},
                                               {"value": [1, 2, 3], "partition": 0}]}))
    assert r.status_code == 200, r.text
    offsets = r.json()["offsets"]
    assert [o["error_code"] for o in offsets] == [None, None] and offsets[1]["partition"] == 0, offsets
    expected[(offsets[0]["partition"], offsets[0]["offset"])] = (b'"bob"', b'{"total":7}')
    expected[(0, offsets[1]["offset"])] = (None, b"[1,2,3]")
    r = http.post(f"{url}/topics/orders/partitions/0", headers={"Content-Type": V2_BINARY_CT}, timeout=30,
                  data=json.dumps({"records": [{"value": b64("world")}]}))
    assert r.status_code == 200, r.text
    (o,) = r.json()["offsets"]
    assert o["partition"] == 0 and o["error_code"] is None
    expected[(0, o["offset"])] = (None, b"world")

    # Every partition reads back (binary) exactly as produced, dense from offset 0.
    stored = _read_all(dlog, "orders", 3)
    got = {(p, off): (k, v) for p, recs in stored.items() for off, k, v in recs}
    assert got == expected
    for p, recs in stored.items():
        assert [off for off, _k, _v in recs] == list(range(len(recs)))
    # The README's partition-0 read without Accept defaults to the binary format.
    r = http.get(f"{url}/topics/orders/partitions/0/records?offset=0", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(BINARY_V2), r.headers
    assert [unb64(x["value"]) for x in r.json()] == [v for (p, _o), (_k, v) in sorted(expected.items()) if p == 0]

    # The json Accept parses the stored JSON: partition 0 from the [1,2,3] record, one record.
    list_offset = next(off for (p, off), (_k, v) in expected.items() if p == 0 and v == b"[1,2,3]")
    r = http.get(f"{url}/topics/orders/partitions/0/records", headers={"Accept": JSON_V2}, timeout=10,
                 params={"offset": list_offset, "max_bytes": 8})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith(JSON_V2)
    assert [(x["offset"], x["key"], x["value"]) for x in r.json()] == [(list_offset, None, [1, 2, 3])]
    # The v2 json record keeps its JSON key and value.
    bob = next(po for po, (k, _v) in expected.items() if k == b'"bob"')
    r = http.get(f"{url}/topics/orders/partitions/{bob[0]}/records", headers={"Accept": JSON_V2}, timeout=10,
                 params={"offset": bob[1], "max_bytes": 1})
    assert r.status_code == 200, r.text
    assert [(x["offset"], x["key"], x["value"]) for x in r.json()][:1] == [(bob[1], "bob", {"total": 7})]
    # A v3 STRING key is raw bytes ("alice" is not JSON), so the json format refuses that record.
    alice = next(po for po, (k, _v) in expected.items() if k == b"alice")
    r = http.get(f"{url}/topics/orders/partitions/{alice[0]}/records", headers={"Accept": JSON_V2}, timeout=10,
                 params={"offset": alice[1], "max_bytes": 1})
    assert r.status_code == 422 and r.json()["error_code"] == 42203, r.text
    # A json read over a record that is not JSON ("hello") answers 422, as the REST Proxy does.
    hello = next(off for (p, off), (_k, v) in expected.items() if p == 0 and v == b"hello")
    r = http.get(f"{url}/topics/orders/partitions/0/records", headers={"Accept": JSON_V2}, timeout=10,
                 params={"offset": hello})
    assert r.status_code == 422 and r.json()["error_code"] == 42203, r.text

    # The partition's visibility fields.
    part = http.get(f"{url}/v3/clusters/{cid}/topics/orders/partitions/0", timeout=10).json()
    p0 = sum(1 for (p, _o) in expected if p == 0)
    assert (part["log_start_offset"], part["log_end_offset"], part["high_watermark"]) == (0, p0, p0)
    assert sorted(part["isr"]) == [0, 1, 2] and part["leader_id"] in (0, 1, 2)

    # A clean stop (SIGTERM) ends the whole process group promptly.
    began = time.monotonic()
    assert dlog.stop() == 0
    shutdown_s = time.monotonic() - began
    assert shutdown_s < 10, shutdown_s

    # `dlog db upgrade` on the existing directory is a no-op: every file's dump is unchanged.
    before = _dump(dlog.data_dir)
    assert set(before) == {"controller.db", "broker-0.db", "broker-1.db", "broker-2.db"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLOG_")}
    done = subprocess.run([DLOG, "db", "upgrade", "--data-dir", str(dlog.data_dir)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("upgraded"), done.stdout
    assert _dump(dlog.data_dir) == before

    # Restart on the same directory: same cluster id, same records.
    dlog.start()
    assert dlog.cluster_id() == cid
    assert http.get(f"{url}/health/ready", timeout=10).json()["cluster_id"] == cid
    assert _read_all(dlog, "orders", 3) == stored
    # And it still takes writes, appended after the old ones.
    r = http.post(f"{url}/topics/orders/partitions/0", headers={"Content-Type": V2_BINARY_CT}, timeout=30,
                  data=json.dumps({"records": [{"value": b64("again")}]}))
    assert r.status_code == 200 and r.json()["offsets"][0]["offset"] == p0, r.text
    # A `--brokers` different from the directory's does not shrink the cluster.
    assert dlog.stop() == 0
    dlog.brokers = 1
    dlog.start()
    assert dlog.cluster_id() == cid
    assert len(http.get(f"{url}/health/ready", timeout=10).json()["brokers"]) == 3
    assert server_log_errors(dlog) == []


def _worker_kills(dlog, kills: int, seed: int) -> dict:
    """Produce (acks=all, 4 threads) while SIGKILLing one worker ``kills`` times, each time
    checking that the service answers at once and that the master replaces the worker."""
    rng = random.Random(seed)
    dlog.create_topic("wk", partitions=2, replication_factor=3)
    cid = dlog.cluster_id()
    workers = dlog.wait_workers()
    assert len(workers) == 2 and dlog.pid not in workers
    producers = [Producer(dlog.url, cid, "wk", f"w{i}", [0, 1], acks="all", max_batch=10, seed=seed + i, timeout=30)
                 for i in range(4)]
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in producers]
    victims = []
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        acked_before = sum(len(p.acked) for p in producers)
        for _ in range(kills):
            victim = rng.choice(workers)
            victims.append(victim)
            os.kill(victim, signal.SIGKILL)
            # The service answers at once (the surviving worker), on fresh connections.
            answered = 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and answered < 20:
                with requests.get(f"{dlog.url}/health/ready", timeout=5, headers={"Connection": "close"}) as r:
                    assert r.status_code == 200, r.text
                answered += 1
            workers = dlog.wait_workers(exclude=victims)
            time.sleep(rng.uniform(0.5, 1.0))  # keep producing through the new worker too
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    histories = [p.history() for p in producers]
    acked = sum(len(h["acked"]) for h in histories)
    assert acked_before > 0 and acked > acked_before, (acked_before, acked)
    summary = check_log(dlog, "wk", [0, 1], histories)
    statuses: dict[str, int] = {}
    for h in histories:
        for k, v in h["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    print(f"\nworker kill x{kills}: {summary['acked']} acked, {summary['unknown']} unknown "
          f"({summary['unknown_stored']} stored), statuses {statuses}")
    assert summary["problems"] == {}, summary
    assert summary["failed"] == 0, summary
    assert not any(k.startswith("5") for k in statuses), statuses
    assert summary["stored"] == summary["acked"] + summary["unknown_stored"], summary
    # At most the requests in flight on a killed worker are unknown: one per producer per kill.
    assert summary["unknown"] <= 10 * len(producers) * kills, summary
    assert dlog.running and dlog.wait_ready(10)["status"] == "ready"
    assert server_log_errors(dlog, allow=[f"Worker (pid:{v}) was sent SIGKILL" for v in victims]) == []
    return summary


def test_worker_kill9_keeps_service_and_data(dlog):
    """SIGKILL one gunicorn worker during a produce loop; the other keeps serving, the master
    replaces it, and every acknowledged record is still there."""
    _worker_kills(dlog, kills=1, seed=1)


@pytest.mark.slow
def test_worker_kill9_many_times(dlog):
    """The full-size run: 20 worker kills during an acks=all produce loop."""
    _worker_kills(dlog, kills=20, seed=2)
