"""Concurrent appends to ONE partition through real gunicorn workers (reliability.md R12's oracle).

Many clients append at once, through 2 worker processes x 4 threads: from threads of this
process, and from several client processes each with threads. Single-record and multi-record
requests are mixed. Afterwards the whole partition is read back over HTTP and must hold every
acknowledged record exactly once at its reported offset, offsets dense from 0, with no two
acknowledged records on one offset, and no request may have met a 5xx or "database is locked".
Each worker's CPU time (from /proc) shows that both took a share of the appends.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import check_log, cpu_ticks, server_log_errors
from .produce_client import Producer

CLIENT = str(Path(__file__).with_name("produce_client.py"))


def _assert_clean(dlog, summary: dict, histories: list[dict], expected_records: int) -> None:
    statuses: dict[str, int] = {}
    for h in histories:
        for k, v in h["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    bad = [b for h in histories for b in h["bad_answers"]]
    assert not bad, bad[:10]
    assert set(statuses) == {"200"}, statuses
    assert summary["unknown"] == 0 and summary["failed"] == 0, summary
    assert summary["problems"] == {}, summary
    assert summary["acked"] == expected_records == summary["stored"] == summary["ends"][0], summary
    assert server_log_errors(dlog) == []


def _run_threads(dlog, topic: str, threads: int, records_per_thread: int, seed: int) -> tuple[list[dict], float]:
    cid = dlog.cluster_id()
    # Half the clients open a connection per request, so that both workers get appends (kept-alive
    # connections opened in one burst tend to land on one worker).
    producers = [Producer(dlog.url, cid, topic, f"th{i}", [0], max_batch=20, seed=seed + i,
                          fresh_connections=(i % 2 == 1)) for i in range(threads)]
    barrier = threading.Barrier(threads)

    def run(p: Producer) -> None:
        barrier.wait()
        p.run(records=records_per_thread)

    workers = [threading.Thread(target=run, args=(p,), daemon=True) for p in producers]
    start = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in workers), "producer threads hang"
    return [p.history() for p in producers], elapsed


def _run_processes(dlog, tmp_path: Path, topic: str, processes: int, threads: int,
                   records_per_thread: int) -> tuple[list[dict], float]:
    cid = dlog.cluster_id()
    start_at = time.time() + 1.5  # a common start line, after every interpreter has imported requests
    procs = []
    for n in range(processes):
        out = tmp_path / f"client-{n}.json"
        cmd = [sys.executable, CLIENT, "--url", dlog.url, "--cluster-id", cid, "--topic", topic,
               "--prefix", f"proc{n}", "--threads", str(threads), "--records", str(records_per_thread),
               "--seed", str(n + 1), "--start-at", str(start_at), "--out", str(out), "--fresh-connections"]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out))
    histories = []
    try:
        for proc, out in procs:
            output, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
            histories.extend(json.loads(out.read_text()))
    finally:
        for proc, _out in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return histories, time.time() - start_at


def _report(label: str, summary: dict, histories: list[dict], elapsed: float) -> None:
    requests_sent = sum(h["requests"] for h in histories)
    latencies = sorted(x for h in histories for x in h["latencies"])
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    print(f"\n{label}: {summary['acked']} records in {requests_sent} requests, {elapsed:.2f}s: "
          f"{summary['acked'] / elapsed:.0f} records/s, {requests_sent / elapsed:.0f} requests/s, "
          f"p99 latency {p99 * 1000:.0f} ms")


def _busy_workers(dlog, before: dict[int, int]) -> dict[int, int]:
    """CPU ticks each worker spent since ``before``; each must have done a share of the
    appends (an idle worker spends a few ticks on its background thread), or the run did
    not test two processes appending at once."""
    busy = {pid: cpu_ticks(pid) - ticks for pid, ticks in before.items()}
    print(f"\nCPU ticks per worker: {busy}")
    assert len(busy) == 2 and min(busy.values()) >= max(5, sum(busy.values()) // 10), busy
    return busy


def test_threads_append_to_one_partition(dlog):
    """16 client threads, 2 workers x 4 threads, one partition, 3,200 records."""
    dlog.create_topic("conc-threads", partitions=1, replication_factor=1)
    threads, per_thread = 16, 200
    workers = {pid: cpu_ticks(pid) for pid in dlog.wait_workers()}
    histories, elapsed = _run_threads(dlog, "conc-threads", threads, per_thread, seed=100)
    _busy_workers(dlog, workers)
    expected = sum(h["sent"] for h in histories)
    assert expected >= threads * per_thread
    summary = check_log(dlog, "conc-threads", [0], histories)
    _report("threads", summary, histories, elapsed)
    _assert_clean(dlog, summary, histories, expected)


def test_client_processes_append_to_one_partition(dlog, tmp_path):
    """4 client processes x 4 threads each, one partition, 2,400 records."""
    dlog.create_topic("conc-procs", partitions=1, replication_factor=1)
    workers = {pid: cpu_ticks(pid) for pid in dlog.wait_workers()}
    histories, elapsed = _run_processes(dlog, tmp_path, "conc-procs", processes=4, threads=4,
                                        records_per_thread=150)
    _busy_workers(dlog, workers)
    expected = sum(h["sent"] for h in histories)
    assert len(histories) == 16 and expected >= 16 * 150
    summary = check_log(dlog, "conc-procs", [0], histories)
    _report("processes", summary, histories, elapsed)
    _assert_clean(dlog, summary, histories, expected)


@pytest.mark.slow
def test_many_clients_append_to_one_partition_large(dlog, tmp_path):
    """The full-size run: 6 client processes x 6 threads plus 8 local threads, about 25,000 records."""
    dlog.create_topic("conc-large", partitions=1, replication_factor=1)
    local: list[dict] = []
    t = threading.Thread(target=lambda: local.extend(_run_threads(dlog, "conc-large", 8, 600, seed=500)[0]),
                         daemon=True)
    t.start()
    histories, elapsed = _run_processes(dlog, tmp_path, "conc-large", processes=6, threads=6,
                                        records_per_thread=550)
    t.join(300)
    histories += local
    expected = sum(h["sent"] for h in histories)
    summary = check_log(dlog, "conc-large", [0], histories)
    _report("large", summary, histories, elapsed)
    _assert_clean(dlog, summary, histories, expected)
