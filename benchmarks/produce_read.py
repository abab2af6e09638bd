#!/usr/bin/env python3
"""Produce and read throughput of dlog, beside baselines measured in the same run.

One run measures, on this machine:

* baselines: raw ``sqlite3`` appends of 100-byte records to a table shaped like dlog's
  ``record`` table (WITHOUT ROWID, PK (log_id, offset); WAL; dlog's synchronous mode) in
  1000-row and 1-row commits, raw range reads of 1000 consecutive offsets, and a bare Flask
  endpoint under gunicorn with dlog's worker settings (gthread, 2 workers x 4 threads), driven
  by the same load generator as dlog;
* dlog under gunicorn (``dlog serve``, a fresh data directory, 3 brokers, default workers and
  threads): single-record produces (v3 acks=1 and acks=all, v2 acks=1; RF 1, then RF 3),
  1000-record batches (v3 concatenated JSON with BINARY values, v2 binary ``{"records": [...]}``;
  acks=1 and acks=all) and the stateless read of everything back in 1000-record fetches;

and prints records/s (and requests/s, p50/p99) with the ratios the performance targets use.
Every phase also checks its results: the end offset (high watermark) of each topic equals the
records acknowledged, and the read returns every offset once, in order.

The machine is shared by everything running on it: the ``other`` column gives the cores other
processes used during each phase, and a warning is printed when that makes the figures unreliable
(``--wait-idle`` waits for an idle machine first).

The load generator is pure Python: a few processes, each multiplexing keep-alive HTTP/1.1
connections over raw sockets with ``selectors`` (a small wrk), so it costs the server little
CPU. It runs on the same cores as the server, as wrk did for the published baselines.

Usage (from the repository root, with the venv)::

    .venv/bin/python benchmarks/produce_read.py                 # full run (~3 min)
    .venv/bin/python benchmarks/produce_read.py --quick         # smoke run (< 60 s)
    .venv/bin/python benchmarks/produce_read.py --duration 20 --json > result.json
    .venv/bin/python benchmarks/produce_read.py --wait-idle 600 --sync normal --workers 1

Progress goes to stderr; the table (or, with ``--json``, one JSON document) to stdout.

Every process it starts is stopped (by pid / process group) and every temp dir removed at
the end, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The shared machinery (load generator, baselines, servers, clean-up) lives in common.py; the
# names are re-exported here for the scripts that import them from produce_read.
from common import (  # noqa: E402,F401
    run_benchmark,
    BATCH,
    CLEANUP,
    REPO,
    VALUE_BYTES,
    Cleanup,
    _host_cpu,
    _loads,
    _dumps,
    _on_sigterm,
    _proc_cpu_seconds,
    bare_echo,
    create_topic,
    dlog_command,
    end_offset,
    free_port,
    http_post,
    log,
    machine_busy,
    median_of,
    pct,
    phase,
    run_load,
    run_sqlite_baselines,
    sqlite_append,
    sqlite_range_read,
    start_bare_flask,
    start_dlog,
    v2_records,
    v3_batch,
    v3_single,
    wait_high_watermark,
)

TARGETS = {"batch_vs_sqlite": 0.30, "single_vs_flask": 0.50}


def run(args) -> dict:
    workdir = tempfile.mkdtemp(prefix="dlog-bench-")
    CLEANUP.dirs.append(workdir)
    try:
        return _run(args, workdir)
    except Exception:
        for name in ("dlog.log", "bare.log"):
            path = Path(workdir, name)
            if path.exists():
                log(f"--- tail of {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        raise


def _run(args, workdir: str) -> dict:
    procs = args.loadgen_procs
    d, w = args.duration, args.warmup
    results: dict[str, Any] = {
        "config": {"duration_s": d, "warmup_s": w, "quick": args.quick, "sync": args.sync,
                   "connections": args.connections, "batch_connections": args.batch_connections,
                   "read_connections": args.read_connections, "loadgen_processes": procs,
                   "cpus": os.cpu_count(), "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
                   "workers": args.workers or 2, "threads": args.threads or 4},
        "baselines": {}, "phases": {}, "checks": {},
    }
    rng = random.Random(42)
    if args.wait_idle:
        deadline = time.monotonic() + args.wait_idle
        while (busy := machine_busy(2.0)) > 0.15 and time.monotonic() < deadline:
            log(f"waiting for the machine to go idle ({busy:.2f} cores busy)")
    busy = machine_busy()
    results["config"]["busy_cores_before"] = busy
    if busy > 0.2:
        log(f"WARNING: {busy:.2f} cores were busy with other work before the run; figures will be low and noisy")

    # ------------------------------------------------------------- (1a, 1c) sqlite baselines
    log(f"temp dir {workdir}; sqlite baselines ({args.reps} run(s) each, up to {args.sqlite_seconds} s)")
    results["baselines"].update(run_sqlite_baselines(workdir, args.sync, args.reps, args.sqlite_seconds))

    # ------------------------------------------------------------- (1b) bare Flask under gunicorn
    port = free_port()
    host = f"127.0.0.1:{port}"
    workers, threads = args.workers or 2, args.threads or 4
    log(f"bare Flask under gunicorn gthread {workers}w x {threads}t on {host}")
    bare = start_bare_flask(workdir, port, workers, threads)
    specs = [{"kind": "repeat", "request": bare_echo(host, rng)} for _ in range(args.connections)]
    res = phase(results, run_load("bare_flask_echo", "127.0.0.1", port, specs, procs, w, d, bare.pid))
    results["baselines"]["bare_flask_echo"] = res
    CLEANUP.stop_popen(bare)

    # ------------------------------------------------------------- (2) dlog
    port = free_port()
    host = f"127.0.0.1:{port}"
    base = f"http://{host}"
    log(f"dlog serve (3 brokers, workers {args.workers or 'default'}, threads {args.threads or 'default'}, "
        f"sync {args.sync}) on {host}")
    srv = start_dlog(workdir, port, args.sync, args.workers, args.threads)
    cid = requests.get(f"{base}/v3/clusters", timeout=30).json()["data"][0]["cluster_id"]
    topics = {"single1": "bench-single-rf1", "single3": "bench-single-rf3", "v2single": "bench-v2-single",
              "batch1": "bench-batch-rf1", "batch3": "bench-batch-rf3"}
    for key, name in topics.items():
        create_topic(base, cid, name, 3 if key.endswith("3") else 1)
    acked: dict[str, int] = {name: 0 for name in topics.values()}

    def produce(name: str, topic: str, make, conns: int, per_request: int) -> dict:
        specs = [{"kind": "repeat", "request": make()} for _ in range(conns)]
        r = phase(results, run_load(name, "127.0.0.1", port, specs, procs, w, d, srv.pid, per_request))
        acked[topic] += r["requests_total"] * per_request
        return r

    c, bc = args.connections, args.batch_connections
    t1, t3 = topics["single1"], topics["single3"]
    b1, b3 = topics["batch1"], topics["batch3"]
    # (3a) single-record produces, (3b) 1000-record batches; RF 1 first
    produce("dlog_v3_single_acks1_rf1", t1, lambda: v3_single(host, cid, t1, "1", rng), c, 1)
    produce("dlog_v3_single_acksall_rf1", t1, lambda: v3_single(host, cid, t1, "all", rng), c, 1)
    produce("dlog_v2_single_acks1_rf1", topics["v2single"], lambda: v2_records(host, topics["v2single"], "1", rng, 1),
            c, 1)
    produce("dlog_v3_batch1000_acks1_rf1", b1, lambda: v3_batch(host, cid, b1, "1", rng), bc, BATCH)
    produce("dlog_v2_batch1000_acks1_rf1", b1, lambda: v2_records(host, b1, "1", rng, BATCH), bc, BATCH)
    produce("dlog_v3_batch1000_acksall_rf1", b1, lambda: v3_batch(host, cid, b1, "all", rng), bc, BATCH)
    # RF 3 last: followers copy in the background; let them catch up before the next phase
    for name, topic, make, conns, per in (
            ("dlog_v3_single_acks1_rf3", t3, lambda: v3_single(host, cid, t3, "1", rng), c, 1),
            ("dlog_v3_single_acksall_rf3", t3, lambda: v3_single(host, cid, t3, "all", rng), c, 1),
            ("dlog_v3_batch1000_acks1_rf3", b3, lambda: v3_batch(host, cid, b3, "1", rng), bc, BATCH),
            ("dlog_v3_batch1000_acksall_rf3", b3, lambda: v3_batch(host, cid, b3, "all", rng), bc, BATCH)):
        r = produce(name, topic, make, conns, per)
        r["replication_catch_up_s"] = wait_high_watermark(base, topic, acked[topic], 120.0)

    # every acknowledged record is there (below the high watermark), and nothing else
    for topic, count in acked.items():
        eo = end_offset(base, topic)
        results["checks"][f"end_offset_{topic}"] = {"acknowledged": count, "end_offset": eo, "ok": eo == count}
        if eo != count:
            log(f"CHECK FAILED: {topic} end offset {eo} != acknowledged {count}")

    # (3c) read everything back from the batch topic in 1000-record fetches
    total = end_offset(base, topics["batch1"])
    if args.read_limit and total > args.read_limit:
        total = args.read_limit - args.read_limit % BATCH
    rc = max(1, min(args.read_connections, total // BATCH))
    blocks = (total + BATCH - 1) // BATCH
    bounds = [round(i * blocks / rc) * BATCH for i in range(rc + 1)]
    bounds[-1] = total
    read_specs = [{"kind": "read", "host": host, "path": f"/topics/{topics['batch1']}/partitions/0/records",
                   "start": bounds[i], "end": bounds[i + 1], "max_bytes": VALUE_BYTES * BATCH,
                   "value_bytes": VALUE_BYTES} for i in range(rc) if bounds[i + 1] > bounds[i]]
    log(f"reading offsets 0..{total - 1} of {topics['batch1']} with {len(read_specs)} connection(s)")
    res = phase(results, run_load("dlog_read_1000", "127.0.0.1", port, read_specs, min(procs, len(read_specs)),
                                  0.0, None, srv.pid, BATCH))
    results["checks"]["read_back"] = {"expected": total, "read": res["records_read"],
                                      "ok": res["records_read"] == total and res["error_count"] == 0
                                      and not res["errors"]}
    CLEANUP.stop_popen(srv)
    return results


def ratios(results: dict) -> dict:
    b, p = results["baselines"], results["phases"]
    sq = b["sqlite_executemany_1000"]["median"]
    fl = b["bare_flask_echo"]["req_per_s"]
    rd = b["sqlite_range_read_1000"]["median"]
    one = b["sqlite_1row_commit"]["median"]
    out = {
        "v3_batch_acks1_vs_sqlite_executemany_1000": p["dlog_v3_batch1000_acks1_rf1"]["rec_per_s"] / sq,
        "v2_batch_acks1_vs_sqlite_executemany_1000": p["dlog_v2_batch1000_acks1_rf1"]["rec_per_s"] / sq,
        "v3_single_acks1_vs_bare_flask": p["dlog_v3_single_acks1_rf1"]["req_per_s"] / fl,
        "v2_single_acks1_vs_bare_flask": p["dlog_v2_single_acks1_rf1"]["req_per_s"] / fl,
        "v3_single_acks1_vs_sqlite_1row_commit": p["dlog_v3_single_acks1_rf1"]["rec_per_s"] / one,
        "read_vs_sqlite_range_read": p["dlog_read_1000"]["rec_per_s"] / rd,
    }
    return out


def render(results: dict) -> str:
    b, p, r = results["baselines"], results["phases"], results["ratios"]
    cfg = results["config"]
    lines = []
    lines.append(f"dlog produce/read benchmark: {cfg['cpus']} CPUs, Python {cfg['python']}, SQLite {cfg['sqlite']}, "
                 f"sync={cfg['sync']}, gunicorn gthread {cfg['workers']}w x {cfg['threads']}t, "
                 f"{cfg['duration_s']} s per phase (+{cfg['warmup_s']} s warm-up), load generator "
                 f"{cfg['loadgen_processes']} processes")
    lines.append("")
    hdr = f"{'measurement':<44} {'conns':>5} {'req/s':>10} {'records/s':>11} {'p50 ms':>8} {'p99 ms':>8} " \
          f"{'errors':>6} {'srv CPU':>7} {'gen CPU':>7} {'other':>6}"
    lines.append(hdr)
    lines.append("-" * len(hdr))

    def base_row(label, s, unit_rps=None):
        spread = f"  [{s['min']:,.0f}-{s['max']:,.0f}]" if len(s["runs"]) > 1 else ""
        lines.append(f"{label:<44} {'-':>5} {unit_rps or '-':>10} {s['median']:>11,.0f} {'-':>8} {'-':>8} "
                     f"{'-':>6} {'-':>7} {'-':>7} {'-':>6}{spread}")

    def row(label, x):
        p50 = f"{x['p50_ms']:.1f}" if x.get("p50_ms") is not None else "-"
        p99 = f"{x['p99_ms']:.1f}" if x.get("p99_ms") is not None else "-"
        srv = f"{x['server_cpu_cores']:.2f}" if x.get("server_cpu_cores") is not None else "-"
        gen = f"{x['loadgen_cpu_cores']:.2f}" if x.get("loadgen_cpu_cores") is not None else "-"
        oth = f"{x['other_cpu_cores']:.2f}" if x.get("other_cpu_cores") is not None else "-"
        recs = f"{x['rec_per_s']:,.0f}" if x["records_per_request"] else "-"
        note = ""
        if "replication_catch_up_s" in x:
            cu = x["replication_catch_up_s"]
            note = f"  HW caught up {cu:.1f} s later" if cu is not None else "  HW did NOT catch up"
        lines.append(f"{label:<44} {x['connections']:>5} {x['req_per_s']:>10,.0f} {recs:>11} {p50:>8} {p99:>8} "
                     f"{x['error_count']:>6} {srv:>7} {gen:>7} {oth:>6}{note}")

    lines.append("BASELINES (same run)")
    base_row("sqlite executemany, 1000-row commits", b["sqlite_executemany_1000"])
    base_row("sqlite 1-row commits", b["sqlite_1row_commit"])
    base_row("sqlite range read, 1000 offsets/query", b["sqlite_range_read_1000"],
             f"{b['sqlite_range_read_1000']['median'] / BATCH:,.0f}")
    fl = dict(b["bare_flask_echo"], records_per_request=0)
    row("bare Flask echo (gunicorn gthread)", fl)
    lines.append("DLOG")
    labels = {
        "dlog_v3_single_acks1_rf1": "v3 single record, acks=1, RF1",
        "dlog_v3_single_acksall_rf1": "v3 single record, acks=all, RF1",
        "dlog_v2_single_acks1_rf1": "v2 single record, acks=1, RF1",
        "dlog_v3_batch1000_acks1_rf1": "v3 1000-record batch, acks=1, RF1",
        "dlog_v2_batch1000_acks1_rf1": "v2 1000-record batch, acks=1, RF1",
        "dlog_v3_batch1000_acksall_rf1": "v3 1000-record batch, acks=all, RF1",
        "dlog_v3_single_acks1_rf3": "v3 single record, acks=1, RF3",
        "dlog_v3_single_acksall_rf3": "v3 single record, acks=all, RF3",
        "dlog_v3_batch1000_acks1_rf3": "v3 1000-record batch, acks=1, RF3",
        "dlog_v3_batch1000_acksall_rf3": "v3 1000-record batch, acks=all, RF3",
        "dlog_read_1000": "read back, 1000-record fetches",
    }
    for key, label in labels.items():
        if key in p:
            row(label, p[key])
    lines.append("")
    lines.append("RATIOS")

    def ratio_line(label, value, target=None):
        verdict = ""
        if target is not None:
            verdict = f"   target >= {target:.0%}: {'MET' if value >= target else 'MISSED'}"
        lines.append(f"  {label:<62} {value:>7.1%}{verdict}")

    ratio_line("v3 batch acks=1 / sqlite executemany 1000-row commits", r["v3_batch_acks1_vs_sqlite_executemany_1000"],
               TARGETS["batch_vs_sqlite"])
    ratio_line("v2 batch acks=1 / sqlite executemany 1000-row commits", r["v2_batch_acks1_vs_sqlite_executemany_1000"],
               TARGETS["batch_vs_sqlite"])
    ratio_line("v3 single acks=1 / bare Flask req/s", r["v3_single_acks1_vs_bare_flask"], TARGETS["single_vs_flask"])
    ratio_line("v2 single acks=1 / bare Flask req/s", r["v2_single_acks1_vs_bare_flask"], TARGETS["single_vs_flask"])
    ratio_line("v3 single acks=1 / sqlite 1-row commits (informational)", r["v3_single_acks1_vs_sqlite_1row_commit"])
    ratio_line("read / sqlite range read (informational)", r["read_vs_sqlite_range_read"])
    lines.append("")
    s = p["dlog_v3_single_acks1_rf1"]
    lines.append(f"single-record produce latency (v3, acks=1, {s['connections']} connections): "
                 f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")
    checks = results["checks"]
    bad = [k for k, v in checks.items() if not v["ok"]]
    lines.append(f"checks: {len(checks) - len(bad)}/{len(checks)} passed"
                 + (f"; FAILED: {', '.join(bad)}" if bad else
                    " (end offset = acknowledged records for every topic; everything read back, dense and in order)"))
    lines.append("srv CPU / gen CPU / other: cores used in the measured window by gunicorn (master+workers), by the "
                 "load generator, and by anything else on the machine")
    noisy = [k for k, v in list(p.items()) + [("bare_flask_echo", b["bare_flask_echo"])]
             if (v.get("other_cpu_cores") or 0) > 0.3]
    if noisy:
        lines.append(f"WARNING: other processes used > 0.3 cores during {len(noisy)} phase(s) ('other' column): "
                     "those rates, and the ratios built on them, are low and noisy; rerun on an idle machine.")
    if cfg.get("busy_cores_before", 0) > 0.2:
        lines.append(f"WARNING: {cfg['busy_cores_before']:.2f} cores were busy with other work before the run started.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds per HTTP phase (default 10; quick 2)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="warm-up seconds before each phase (default 2; quick 0.5)")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (< 60 s)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of the table")
    ap.add_argument("--connections", type=int, default=16, help="connections for single-record phases (default 16)")
    ap.add_argument("--batch-connections", type=int, default=4, help="connections for batch phases (default 4)")
    ap.add_argument("--read-connections", type=int, default=4, help="connections for the read phase (default 4)")
    ap.add_argument("--read-limit", type=int, default=None,
                    help="read at most this many records back (default: all; quick: 200000)")
    ap.add_argument("--loadgen-procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--reps", type=int, default=None, help="runs of each sqlite baseline (default 3; quick 1)")
    ap.add_argument("--sqlite-seconds", type=float, default=None, help="cap per sqlite run (default 3; quick 1)")
    ap.add_argument("--sync", choices=("full", "normal"), default="full",
                    help="SQLite synchronous mode for dlog and the sqlite baselines (default full, as dlog)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="first wait up to SECONDS for other processes to leave the CPUs idle (default 0)")
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers for dlog and bare Flask (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default 4)")
    args = ap.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    args.reps = args.reps or (1 if args.quick else 3)
    args.sqlite_seconds = args.sqlite_seconds or (1.0 if args.quick else 3.0)
    if args.read_limit is None and args.quick:
        args.read_limit = 200_000

    return run_benchmark(args, run, ratios, render)


if __name__ == "__main__":
    sys.exit(main())
