#!/usr/bin/env python3
"""Sample a live ``dlog serve`` under load with py-spy and summarise where the time goes.

Starts dlog (fresh temp data dir, 3 brokers, default workers/threads, sync=full), creates a
1-partition topic (RF 1; RF 3 for ``single_rf3_all``), drives one load shape with the load
generator of ``common.py``, and records the gunicorn master and its workers with
``py-spy record --subprocesses -f raw``. Prints the top functions by own time and by
inclusive time.

Shapes: ``single`` (v3, 1 record, acks=1, 16 connections), ``v3batch`` / ``v2batch`` (1000
records, 4 connections), ``read`` (stateless 1000-record reads), ``single_rf3_all`` (v3, 1
record, acks=all, RF 3, 8 connections), ``consume`` (2 v2 consumer instances polling
``GET .../records?max_bytes=100000``, each seeking back to the beginning at the end),
``plain_rf3`` / ``idem_rf3`` / ``txn_rf3`` (the delivery benchmark's producers: 4 connections,
each its own partition of an RF 3 topic and its own producer, 100-record acks=all produces; the
transactional ones commit every 100 ms).

* ``--gil`` samples only the thread holding the GIL: Python CPU time.
* without it, every running thread is sampled: wall time, including waits in locks and fsync.

py-spy is not a dependency of dlog: ``.venv/bin/pip install py-spy`` first.

Usage::

    .venv/bin/python benchmarks/profile_live.py single|v3batch|v2batch|read|single_rf3_all|consume
        [--seconds 10] [--gil]
        [--top 30] [--raw FILE]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import random
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import produce_read as pr  # noqa: E402
import delivery  # noqa: E402


class LoopingConsumer(delivery.ConsumerClient):
    """A consumer instance that seeks back to the beginning whenever it reached the end."""

    def __init__(self, host: str, path: str, topic: str, end: int) -> None:
        super().__init__(host, path, 10**12, delivery.FETCH_MAX_BYTES, 0)
        self.end = end
        body = ('{"partitions": [{"topic": "%s", "partition": 0}]}' % topic).encode()
        self.seek = pr.http_post(host, path.rsplit("/", 1)[0] + "/positions/beginning", body, delivery.V2_JSON)
        self.seeking = False

    def next_request(self, now, draining):
        if draining:
            return None
        if self.next_offset >= self.end:
            self.seeking = True
            return self.seek
        return self.request

    def response(self, status, body, sent_at, done_at):
        if self.seeking:
            self.seeking = False
            self.next_offset = 0
            return 0, None if status == 204 else f"seek: HTTP {status}", False
        return super().response(status, body, sent_at, done_at)


def summarise(raw: str, top: int) -> str:
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in open(raw):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r" \((.*?):\d+\)", r" (\1)", f) for f in stack.split(";") if not f.startswith("process ")]
        if frames:
            own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    out = [f"{total} samples", "--- own time"]
    out += [f"{v / total * 100:5.1f}%  {k}" for k, v in own.most_common(top)]
    out.append("--- inclusive")
    out += [f"{v / total * 100:5.1f}%  {k}" for k, v in incl.most_common(top)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=("single", "v3batch", "v2batch", "read", "single_rf3_all", "consume",
                                      "plain_rf3", "idem_rf3", "txn_rf3"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--gil", action="store_true", help="only the GIL holder (CPU), not wall time")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--raw", help="keep py-spy's raw (collapsed) stacks in this file")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="dlog-spy-")
    pr.CLEANUP.dirs.append(workdir)
    raw = args.raw or os.path.join(workdir, "stacks.raw")
    try:
        port = pr.free_port()
        host = f"127.0.0.1:{port}"
        base = f"http://{host}"
        srv = pr.start_dlog(workdir, port, "full", None, None)
        cid = requests.get(f"{base}/v3/clusters", timeout=30).json()["data"][0]["cluster_id"]
        producers = {"plain_rf3": "plain", "idem_rf3": "idempotent", "txn_rf3": "transactional"}
        rf3 = args.shape == "single_rf3_all" or args.shape in producers
        pr.create_topic(base, cid, "t", 3 if rf3 else 1, 4 if args.shape in producers else 1)
        rng = random.Random(1)
        if args.shape in producers:
            mode, values, specs, per = producers[args.shape], delivery._b64_values(rng), [], 100
            for n in range(4):
                tid = f"prof-{n}" if mode == "transactional" else None
                prod = delivery.init_producer(base, cid, tid) if mode != "plain" else None
                specs.append({"kind": "client", "client": delivery.ProduceClient(
                    host, cid, "t", n, 100, "all", mode, values, prod, tid, 0.1)})
        elif args.shape == "single_rf3_all":
            specs, per = [{"kind": "repeat", "request": pr.v3_single(host, cid, "t", "all", rng)} for _ in range(8)], 1
        elif args.shape == "consume":
            payload = pr.v2_records(host, "t", "1", rng, 1000).partition(b"\r\n\r\n")[2]
            with requests.Session() as s:
                for _ in range(100):
                    r = s.post(f"{base}/topics/t/partitions/0?acks=1", data=payload, timeout=30,
                               headers={"Content-Type": "application/vnd.kafka.binary.v2+json"})
                    r.raise_for_status()
            specs = [{"kind": "client", "client": LoopingConsumer(
                host, delivery.create_consumer(base, f"g{i}", "c0", "t"), "t", 100_000)} for i in range(2)]
            per = 1000
        elif args.shape == "single":
            specs, per = [{"kind": "repeat", "request": pr.v3_single(host, cid, "t", "1", rng)} for _ in range(16)], 1
        elif args.shape == "v3batch":
            specs, per = [{"kind": "repeat", "request": pr.v3_batch(host, cid, "t", "1", rng)} for _ in range(4)], 1000
        elif args.shape == "v2batch":
            specs, per = [{"kind": "repeat", "request": pr.v2_records(host, "t", "1", rng, 1000)} for _ in range(4)], 1000
        else:
            payload = pr.v2_records(host, "t", "1", rng, 1000).partition(b"\r\n\r\n")[2]
            with requests.Session() as s:
                for _ in range(100):
                    r = s.post(f"{base}/topics/t/partitions/0?acks=1", data=payload, timeout=30,
                               headers={"Content-Type": "application/vnd.kafka.binary.v2+json"})
                    r.raise_for_status()
            specs = [{"kind": "repeat", "request": (
                f"GET /topics/t/partitions/0/records?offset={i * 20000}&max_bytes=100000 HTTP/1.1\r\nHost: {host}\r\n"
                "Accept: application/vnd.kafka.binary.v2+json\r\n\r\n").encode()} for i in range(4)]
            per = 1000
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(
            pr.run_load(args.shape, "127.0.0.1", port, specs, 2, 1.0, args.seconds + 2, srv.pid, per)))
        load.start()
        time.sleep(2.0)
        cmd = [spy, "record", "-p", str(srv.pid), "--subprocesses", "-d", str(args.seconds), "-r", "200",
               "-f", "raw", "-o", raw, "--nonblocking"] + (["--gil"] if args.gil else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load.join()
        print(f"{args.shape}: {result['rec_per_s']:,.0f} records/s, {result['req_per_s']:,.0f} req/s, "
              f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, server {result['server_cpu_cores']:.2f} "
              f"cores, other processes {result.get('other_cpu_cores', 0):.2f} cores "
              f"({'GIL holder = CPU' if args.gil else 'all running threads = wall time'})")
        print(summarise(raw, args.top))
    finally:
        pr.CLEANUP.all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
