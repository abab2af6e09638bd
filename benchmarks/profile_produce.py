#!/usr/bin/env python3
"""Where a produce (or read) request's time goes, in-process (no HTTP server, no gunicorn).

Builds dlog's Flask app on a fresh data directory (3 brokers, one topic with 1 partition,
replication factor 1), then calls the WSGI app directly with prepared environ dicts:

* ``single``: one v3 record per request (acks=1),
* ``batch``: a 1000-record v3 concatenated-JSON body (acks=1),
* ``v2batch``: a 1000-record v2 binary body (acks=1),
* ``read``: the stateless read of 1000 records (``GET .../partitions/0/records``, binary),
* ``single_rf3_all``: one v3 record per request, acks=all, to a replication-factor-3 topic
  (no background threads: the request drives the followers' copy itself, as it does when
  it waits for the high watermark under gunicorn),
* ``consume``: a v2 consumer instance (binary, earliest, no auto-commit) polling
  ``GET /consumers/g/instances/c/records?max_bytes=100000`` (1000 records); at the end of the
  topic it seeks back to the beginning (one extra request per 20 polls),

and prints the per-request wall time and a cProfile summary (cumulative and own time).
Everything runs in one thread, so the numbers are CPU cost per request plus the commit's fsync.

Usage::

    .venv/bin/python benchmarks/profile_produce.py [single|batch|v2batch ...] [--n N] [--top K]
        [--sync full|normal] [--no-profile]
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import io
import os
import pstats
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cpu() -> float:
    """CPU seconds (user + system, kernel work for fsync and writes included) of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def environ(method: str, path: str, query: str, body: bytes, content_type: str, accept: str | None = None) -> dict:
    env = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8082", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8082",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if accept:
        env["HTTP_ACCEPT"] = accept
    env["_body"] = body
    return env


def call(app, env: dict) -> tuple[str, bytes]:
    env = dict(env)
    env["wsgi.input"] = io.BytesIO(env.pop("_body"))
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    body = b"".join(app(env, start_response))
    return status[0], body


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=["single", "batch", "v2batch", "read", "single_rf3_all", "consume"])
    ap.add_argument("--n", type=int, default=None, help="requests per case (default 3000 single, 100 batch)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sync", default="full", choices=("full", "normal"))
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()

    import logging
    logging.disable(logging.WARNING)
    from service.api import create_app
    from service.config import Config

    data_dir = tempfile.mkdtemp(prefix="dlog-prof-")
    try:
        app = create_app(Config(data_dir=data_dir, brokers=3, sync=args.sync), start_background=False)
        client = app.test_client()
        cid = client.get("/v3/clusters").json["data"][0]["cluster_id"]
        r = client.post(f"/v3/clusters/{cid}/topics",
                        json={"topic_name": "p", "partitions_count": 1, "replication_factor": 1})
        assert r.status_code in (200, 201), r.data
        r = client.post(f"/v3/clusters/{cid}/topics",
                        json={"topic_name": "p3", "partitions_count": 1, "replication_factor": 3})
        assert r.status_code in (200, 201), r.data
        rng = random.Random(1)

        def value() -> str:
            return base64.b64encode(rng.randbytes(100)).decode()

        cases = {
            "single": (environ("POST", f"/v3/clusters/{cid}/topics/p/records", "acks=1",
                               orjson.dumps({"value": {"type": "BINARY", "data": value()}}), "application/json"),
                       3000, 1),
            "batch": (environ("POST", f"/v3/clusters/{cid}/topics/p/records", "acks=1",
                              b"\n".join(orjson.dumps({"value": {"type": "BINARY", "data": value()}})
                                         for _ in range(1000)), "application/json"), 100, 1000),
            "v2batch": (environ("POST", "/topics/p/partitions/0", "acks=1",
                                orjson.dumps({"records": [{"value": value()} for _ in range(1000)]}),
                                "application/vnd.kafka.binary.v2+json", "application/vnd.kafka.v2+json"), 100, 1000),
            "read": (environ("GET", "/topics/p/partitions/0/records", "offset=1000&max_bytes=100000", b"", "",
                             "application/vnd.kafka.binary.v2+json"), 1000, 1000),
            "single_rf3_all": (environ("POST", f"/v3/clusters/{cid}/topics/p3/records", "acks=all",
                                       orjson.dumps({"value": {"type": "BINARY", "data": value()}}),
                                       "application/json"), 2000, 1),
            "consume": (None, 400, 1000),
            "plain_rf3": (None, 300, 100), "idem_rf3": (None, 300, 100), "txn_rf3": (None, 300, 100),
        }
        v2 = "application/vnd.kafka.v2+json"
        r = client.post("/consumers/g", data=orjson.dumps({"name": "c", "format": "binary", "auto.offset.reset":
                                                          "earliest", "auto.commit.enable": "false"}),
                        content_type=v2)
        assert r.status_code == 200, r.data
        r = client.post("/consumers/g/instances/c/subscription", data=orjson.dumps({"topics": ["p"]}),
                        content_type=v2)
        assert r.status_code == 204, r.data
        poll_env = environ("GET", "/consumers/g/instances/c/records", "max_bytes=100000&timeout=0", b"", "",
                           "application/vnd.kafka.binary.v2+json")
        seek_env = environ("POST", "/consumers/g/instances/c/positions/beginning", "",
                           orjson.dumps({"partitions": [{"topic": "p", "partition": 0}]}), v2)

        def consume_step() -> tuple[str, bytes]:
            status, body = call(app, poll_env)
            if body == b"[]":  # the end of the topic: back to the beginning
                call(app, seek_env)
                status, body = call(app, poll_env)
            return status, body
        r = client.post(f"/v3/clusters/{cid}/topics",
                        json={"topic_name": "d3", "partitions_count": 3, "replication_factor": 3})
        assert r.status_code in (200, 201), r.data
        values = [value() for _ in range(100)]
        producers = {}

        def producer_step(mode: str, partition: int) -> tuple[str, bytes]:
            """100-record acks=all v3 produces; ``txn`` commits after every third produce (about
            what the delivery benchmark's 100 ms commit interval gives under load)."""
            st = producers.get(mode)
            if st is None:
                body = {"transactional_id": f"prof-{mode}"} if mode == "txn" else {}
                ans = client.post(f"/v3/clusters/{cid}/producers", json=body).json
                st = producers[mode] = {"pid": ans["producer_id"], "epoch": ans["producer_epoch"], "seq": 0, "n": 0}
            if mode == "txn" and st["n"] == 3:
                status, body = call(app, environ(
                    "POST", f"/v3/clusters/{cid}/transactions/prof-{mode}:commit", "",
                    orjson.dumps({"producer_id": st["pid"], "producer_epoch": st["epoch"]}), "application/json"))
                ans = orjson.loads(body)
                st.update(pid=ans["producer_id"], epoch=ans["producer_epoch"], seq=0, n=0)
                return status, body
            head = {"partition_id": partition}
            if mode != "plain":
                head.update(producer_id=st["pid"], producer_epoch=st["epoch"])
            if mode == "txn":
                head["transactional_id"] = f"prof-{mode}"
            recs = []
            for i in range(100):
                rec = dict(head, value={"type": "BINARY", "data": values[i]})
                if mode != "plain":
                    rec["sequence"] = st["seq"] + i
                recs.append(orjson.dumps(rec))
            st["seq"] += 100
            st["n"] += 1
            return call(app, environ("POST", f"/v3/clusters/{cid}/topics/d3/records", "acks=all",
                                     b"\n".join(recs), "application/json"))
        steps = {"consume": consume_step,
                 "plain_rf3": lambda: producer_step("plain", 0),
                 "idem_rf3": lambda: producer_step("idem", 1),
                 "txn_rf3": lambda: producer_step("txn", 2)}
        # data to read: 20 batches of 1000
        fill_env = cases["v2batch"][0]
        for _ in range(20):
            call(app, fill_env)
        for name in args.cases:
            env, default_n, per = cases[name]
            n = args.n or default_n
            step = steps.get(name) or (lambda env=env: call(app, env))
            for _ in range(min(20, n)):  # warm-up
                status, body = step()
                assert status.startswith("200"), (status, body[:300])
            if name in ("read", "consume"):
                assert len(orjson.loads(body)) == 1000, len(orjson.loads(body))
            prof = cProfile.Profile() if not args.no_profile else None
            t0, c0 = time.perf_counter(), _cpu()
            if prof:
                prof.enable()
            for _ in range(n):
                step()
            if prof:
                prof.disable()
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
            print(f"\n=== {name}: {n} requests, {dt / n * 1e6:,.0f} us/request, CPU {cpu / n * 1e6:,.0f} us/request "
                  f"(user+system, this process), {n * per / dt:,.0f} records/s "
                  f"({'with' if prof else 'without'} cProfile, sync={args.sync})")
            if prof:
                for key in ("cumulative", "tottime"):
                    out = io.StringIO()
                    st = pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key); st.print_stats(args.top)
                    if key == "tottime" and os.environ.get("CALLERS"): st.print_callers(os.environ["CALLERS"])
                    text = out.getvalue()
                    print(text[text.index("   ncalls"):])
        app.extensions["dlog"].shut_down()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
