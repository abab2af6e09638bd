"""Shared machinery of dlog's benchmarks (``produce_read.py``, ``delivery.py``, the profilers).

* ``Cleanup`` / ``CLEANUP``: every server process, load-generator process and temp dir a run
  started, stopped (by pid / process group) and removed at the end;
* same-run SQLite baselines on a table shaped like dlog's ``record`` table;
* the load generator: a few processes, each multiplexing keep-alive HTTP/1.1 connections over
  raw sockets with ``selectors`` (a small wrk). A connection's spec is ``repeat`` (the same
  request again and again), ``read`` (stateless reads of consecutive offset ranges) or
  ``client`` (an object that builds each request and judges each response: idempotent and
  transactional producers, consumer instances);
* CPU accounting of the server, the load generator and everything else ("other");
* starting a bare Flask endpoint and ``dlog serve`` under gunicorn; request bodies; topic and
  offset helpers.
"""
from __future__ import annotations

import base64
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import requests

try:
    import orjson

    _loads = orjson.loads

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - dlog depends on orjson
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

REPO = Path(__file__).resolve().parent.parent
VALUE_BYTES = 100
BATCH = 1000



def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================== cleanup
class Cleanup:
    """Everything this run started: server processes (own session, stopped by group id),
    load-generator processes and temp dirs."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen] = []
        self.procs: list[mp.Process] = []
        self.dirs: list[str] = []

    def stop_popen(self, p: subprocess.Popen, timeout: float = 15.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # the group of the server we started (start_new_session)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        # The workers are in the same process group; make sure none outlived the master.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p in self.popens:
            self.popens.remove(p)

    def all(self) -> None:
        for proc in list(self.procs):
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        self.procs.clear()
        for p in list(self.popens):
            self.stop_popen(p)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


CLEANUP = Cleanup()


def _on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


# =============================================================================== statistics
def pct(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def median_of(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


# =============================================================================== sqlite baselines
def _record_ddl() -> tuple[list[str], str, str]:
    """DDL of dlog's broker tables (log, record) and dlog's own INSERT / range SELECT text."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    from service import log as unified_log
    from service import schema

    dialect = sqlite_dialect.dialect()
    ddl = [str(CreateTable(t).compile(dialect=dialect)) for t in (schema.log, schema.record)]
    return ddl, unified_log._INSERT_RECORD, unified_log._READ_RECORDS


def _sqlite_conn(path: str, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")  # as dlog's connections (record.log_id references log)
    return conn


def _new_record_db(path: str, sync: str) -> tuple[sqlite3.Connection, str]:
    ddl, insert_sql, _ = _record_ddl()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    conn = _sqlite_conn(path, sync)
    for stmt in ddl:
        conn.execute(stmt)
    conn.execute("INSERT INTO log (log_id, topic_id, topic_name, partition_id) VALUES (1, 't', 't', 0)")
    return conn, insert_sql


def _rows(n: int, start: int = 0) -> list[tuple]:
    value = os.urandom(VALUE_BYTES)
    now = int(time.time() * 1000)
    # (log_id, offset, timestamp, key, value, headers, leader_epoch, producer_id, producer_epoch,
    #  sequence, is_transactional, is_control): dlog's column order, key and headers NULL.
    return [(1, start + i, now, None, value, None, 0, -1, -1, -1, False, False) for i in range(n)]


def sqlite_append(path: str, sync: str, rows_per_commit: int, max_rows: int, max_seconds: float) -> float:
    """Records/s appending ``rows_per_commit`` rows per BEGIN IMMEDIATE ... COMMIT."""
    conn, insert_sql = _new_record_db(path, sync)
    rows = _rows(max_rows)
    batches = [rows[i:i + rows_per_commit] for i in range(0, max_rows, rows_per_commit)]
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        if rows_per_commit == 1:
            conn.execute(insert_sql, batch[0])
        else:
            conn.executemany(insert_sql, batch)
        conn.execute("COMMIT")
        done += len(batch)
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    conn.close()
    return done / elapsed


def sqlite_range_read(path: str, sync: str, rows: int, max_seconds: float) -> float:
    """Records/s reading 1000 consecutive offsets per query (dlog's SELECT), sweeping the table."""
    conn, insert_sql = _new_record_db(path, sync)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert_sql, _rows(rows))
    conn.execute("COMMIT")
    _, _, read_sql = _record_ddl()
    # warm-up sweep (the page cache is warm for dlog's reads of just-written data too)
    for start in range(0, rows, BATCH):
        conn.execute(read_sql, (1, start, start + BATCH, BATCH, 0)).fetchall()
    got = 0
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    while time.perf_counter() < deadline:
        for start in range(0, rows, BATCH):
            got += len(conn.execute(read_sql, (1, start, start + BATCH, BATCH, 0)).fetchall())
            if time.perf_counter() >= deadline:
                break
    elapsed = time.perf_counter() - t0
    conn.close()
    return got / elapsed


def run_sqlite_baselines(workdir: str, sync: str, reps: int, seconds: float) -> dict:
    path = os.path.join(workdir, "baseline.db")
    out = {}
    runs = [sqlite_append(path, sync, BATCH, 400_000, seconds) for _ in range(reps)]
    out["sqlite_executemany_1000"] = median_of(runs)
    rate = out["sqlite_executemany_1000"]["median"]
    log(f"sqlite executemany, 1000-row commits, WAL+{sync.upper()}: {rate:,.0f} rec/s")
    runs = [sqlite_append(path, sync, 1, 30_000, seconds) for _ in range(reps)]
    out["sqlite_1row_commit"] = median_of(runs)
    log(f"sqlite 1-row commits, WAL+{sync.upper()}: {out['sqlite_1row_commit']['median']:,.0f} rec/s")
    runs = [sqlite_range_read(path, sync, 200_000, seconds) for _ in range(reps)]
    out["sqlite_range_read_1000"] = median_of(runs)
    log(f"sqlite range read of 1000 offsets: {out['sqlite_range_read_1000']['median']:,.0f} rec/s")
    remove_db(path)
    return out


def remove_db(path: str) -> None:
    """Delete a baseline SQLite file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


# =============================================================================== load generator
class _Conn:
    """One keep-alive HTTP/1.1 connection with one request in flight."""

    __slots__ = ("spec", "sock", "buf", "sent_at", "head_len", "status", "content_length", "chunked",
                 "close", "offset", "end", "done", "request")

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.offset = spec.get("start", 0)
        self.end = spec.get("end", 0)
        self.done = False
        self.request = b""
        self._reset()

    def _reset(self) -> None:
        self.head_len = -1
        self.status = 0
        self.content_length = -1
        self.chunked = False
        self.close = False

    def connect(self, host: str, port: int) -> None:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf.clear()
        self._reset()

    def next_request(self, draining: bool = False) -> bytes | None:
        spec = self.spec
        if spec["kind"] == "client":
            return spec["client"].next_request(time.monotonic(), draining)
        if draining:
            return None
        if spec["kind"] == "repeat":
            return spec["request"]
        if self.offset >= self.end:
            return None
        return (f"GET {spec['path']}?offset={self.offset}&max_bytes={spec['max_bytes']} HTTP/1.1\r\n"
                f"Host: {spec['host']}\r\nAccept: application/vnd.kafka.binary.v2+json\r\n\r\n").encode()

    def parse(self) -> bytes | None:
        """The body of the response once complete (the buffer keeps what follows), else None."""
        buf = self.buf
        if self.head_len < 0:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return None
            lines = bytes(buf[:i]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.content_length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
                elif name == "connection" and value.strip().lower() == "close":
                    self.close = True
            self.head_len = i + 4
        if self.content_length >= 0:
            end = self.head_len + self.content_length
            if len(buf) < end:
                return None
            body = bytes(buf[self.head_len:end])
            del buf[:end]
            return body
        if self.chunked:
            pos = self.head_len
            parts = []
            while True:
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    return None
                size = int(bytes(buf[pos:j]).split(b";")[0], 16)
                if size == 0:
                    k = buf.find(b"\r\n\r\n", j)  # trailers end
                    if k < 0:
                        return None
                    del buf[:k + 4]
                    return b"".join(parts)
                if len(buf) < j + 2 + size + 2:
                    return None
                parts.append(bytes(buf[j + 2:j + 2 + size]))
                pos = j + 2 + size + 2
        # no length: the body ends when the server closes
        return None


def _loadgen_worker(index: int, host: str, port: int, specs: list[dict], start_at: float, warmup: float,
                    duration: float | None, results: mp.Queue) -> None:
    """One load-generator process: drive ``specs`` (one per connection) and report.

    ``duration`` None: fixed work (each connection runs until its spec is exhausted) and the
    whole run is measured. Otherwise requests run for warmup + duration; responses completing
    inside the measured window are counted, then outstanding requests are drained (not counted
    in the rate but in the totals, so acknowledged records can be reconciled).

    A ``client`` spec carries an object with ``next_request(now, draining) -> bytes | None``
    (None: this connection is done; while draining it may still send, e.g. a final commit),
    ``response(status, body, sent_at, done_at) -> (records, error | None, timed)`` (records
    acknowledged or received, an error text, whether the latency counts) and ``summary() ->
    dict`` (numbers summed over the connections, e.g. records acknowledged, commits).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed(index)
    sel = selectors.DefaultSelector()
    conns = [_Conn(s) for s in specs]
    for c in conns:
        c.connect(host, port)
    now = time.monotonic()
    if start_at > now:
        time.sleep(start_at - now)
    t_start = time.monotonic()
    fixed = duration is None
    win_start = t_start if fixed else t_start + warmup
    win_end = float("inf") if fixed else win_start + duration
    lat: list[float] = []
    statuses: dict[int, int] = {}
    ok_window = 0
    ok_total = 0
    records_total = 0  # for read specs: records received; for client specs: records they counted
    records_window = 0  # client specs: records counted inside the measured window
    errors: list[str] = []
    reconnects = 0
    cpu_start = cpu_end = None
    first_done = last_done = None

    def send(c: _Conn, draining: bool = False) -> bool:
        req = c.next_request(draining)
        if req is None:
            c.done = True
            return False
        c.request = req
        c.sent_at = time.monotonic()
        c.sock.sendall(req)
        return True

    active = 0
    for c in conns:
        if send(c):
            sel.register(c.sock, selectors.EVENT_READ, c)
            active += 1
    if fixed:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_start = ru.ru_utime + ru.ru_stime
    draining = False
    drain_deadline = None
    while active:
        now = time.monotonic()
        if cpu_start is None and now >= win_start:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu_start = ru.ru_utime + ru.ru_stime
        if not draining and now >= win_end:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu_end = ru.ru_utime + ru.ru_stime
            draining = True
            drain_deadline = now + 60.0
        if draining and now > drain_deadline:
            errors.append(f"{active} request(s) still outstanding 60 s after the end; abandoned")
            break
        for key, _ in sel.select(timeout=0.05):
            c: _Conn = key.data
            try:
                data = c.sock.recv(1 << 18)
            except ConnectionError as exc:
                data = b""
                errors.append(f"recv: {exc}")
            if not data:
                # The server closed the connection: reconnect and send the request again
                # (only idempotent reads are resent; a lost produce is counted as an error).
                sel.unregister(c.sock)
                c.sock.close()
                reconnects += 1
                c.connect(host, port)
                if c.spec["kind"] in ("repeat", "client"):
                    errors.append("connection closed with a request in flight")
                    statuses[-1] = statuses.get(-1, 0) + 1
                    if c.spec["kind"] == "client":
                        c.spec["client"].response(-1, b"", c.sent_at, time.monotonic())
                    if not send(c, draining):
                        active -= 1
                        continue
                else:
                    c.sock.sendall(c.request)
                sel.register(c.sock, selectors.EVENT_READ, c)
                continue
            c.buf += data
            body = c.parse()
            if body is None:
                continue
            done_at = time.monotonic()
            status = c.status
            statuses[status] = statuses.get(status, 0) + 1
            if c.spec["kind"] == "client":
                n, err, timed = c.spec["client"].response(status, body, c.sent_at, done_at)
                records_total += n
                in_window = win_start <= done_at < win_end
                if in_window:
                    records_window += n
                if err and len(errors) < 20:
                    errors.append(err)
                if status == 200:
                    ok_total += 1
                    if in_window:
                        ok_window += 1
                        if timed:
                            lat.append(done_at - c.sent_at)
                    if first_done is None:
                        first_done = done_at
                    last_done = done_at
                elif len(errors) < 20:
                    errors.append(f"HTTP {status}: {body[:300]!r}")
            elif status == 200:
                ok_total += 1
                if win_start <= done_at < win_end:
                    ok_window += 1
                    lat.append(done_at - c.sent_at)
                if first_done is None:
                    first_done = done_at
                last_done = done_at
            elif len(errors) < 20:
                errors.append(f"HTTP {status}: {body[:300]!r}")
            if c.spec["kind"] == "read":
                if status != 200:
                    c.done = True
                else:
                    records = _loads(body)
                    n = len(records)
                    if n == 0:
                        errors.append(f"empty read at offset {c.offset} (end {c.end})")
                        c.done = True
                    else:
                        first, last = records[0]["offset"], records[-1]["offset"]
                        if first != c.offset or last - first != n - 1:
                            errors.append(f"read at {c.offset}: got offsets {first}..{last} ({n} records)")
                        if len(base64.b64decode(records[-1]["value"])) != c.spec["value_bytes"]:
                            errors.append(f"read at {c.offset}: wrong value size")
                        records_total += min(last + 1, c.end) - first
                        c.offset = last + 1
            reuse = not c.close
            c._reset()
            if not reuse:
                sel.unregister(c.sock)
                c.sock.close()
                reconnects += 1
                c.connect(host, port)
                sel.register(c.sock, selectors.EVENT_READ, c)
            if c.done or not send(c, draining):
                sel.unregister(c.sock)
                active -= 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    if cpu_end is None:
        cpu_end = ru.ru_utime + ru.ru_stime
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass
    results.put({
        "index": index, "ok_window": ok_window, "ok_total": ok_total, "latencies": lat, "statuses": statuses,
        "errors": errors, "reconnects": reconnects, "cpu_s": cpu_end - (cpu_start or cpu_end),
        "records_total": records_total, "first_done": first_done, "last_done": last_done, "t_start": t_start,
        "records_window": records_window,
        "clients": [s["client"].summary() for s in specs if s["kind"] == "client"],
    })


def _proc_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its live children (gunicorn master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """How many established connections to ``port`` each gunicorn worker holds (sorted, most
    first): a load that lands on one worker runs on one GIL, which skews any ratio."""
    from cli.gunicorn_worker import connections_per_worker as per_worker

    return sorted(per_worker(server_pid, port).values(), reverse=True)


def _host_cpu() -> tuple[float, float]:
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def run_load(name: str, host: str, port: int, specs: list[dict], procs: int, warmup: float,
             duration: float | None, server_pid: int | None, records_per_request: int = 1) -> dict:
    """Spread ``specs`` (one per connection) over ``procs`` processes and aggregate."""
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    groups = [specs[i::procs] for i in range(procs)]
    groups = [g for g in groups if g]
    start_at = time.monotonic() + 0.3 + 0.05 * len(specs)
    workers = []
    for i, g in enumerate(groups):
        p = ctx.Process(target=_loadgen_worker, args=(i, host, port, g, start_at, warmup, duration, results),
                        daemon=True)
        p.start()
        CLEANUP.procs.append(p)
        workers.append(p)
    # CPU snapshots over the measured window (fixed work: from the start to the end)
    win_start = start_at + (0 if duration is None else warmup)
    time.sleep(max(0.0, win_start - time.monotonic()))
    host0 = _host_cpu()
    srv0 = _proc_cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    out = []
    spread = None
    if duration is not None:
        time.sleep(max(0.0, win_start + duration / 2 - time.monotonic()))
        spread = connections_per_worker(server_pid, port) if server_pid else None
        time.sleep(max(0.0, win_start + duration - time.monotonic()))
        host1 = _host_cpu()
        srv1 = _proc_cpu_seconds(server_pid) if server_pid else 0.0
        t1 = time.monotonic()
    deadline = time.monotonic() + (duration or 0) + 900
    while len(out) < len(workers):
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline or not any(p.is_alive() for p in workers):
                if len(out) < len(workers) and results.empty():
                    raise RuntimeError(f"{name}: a load-generator process died without a result")
    if duration is None:
        host1 = _host_cpu()
        srv1 = _proc_cpu_seconds(server_pid) if server_pid else 0.0
        t1 = time.monotonic()
    for p in workers:
        p.join(10)
        CLEANUP.procs.remove(p)
    lat = sorted(x for r in out for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in out:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    errors = [e for r in out for e in r["errors"]]
    if duration is None:
        firsts = [r["t_start"] for r in out]
        lasts = [r["last_done"] for r in out if r["last_done"] is not None]
        window = (max(lasts) - min(firsts)) if lasts else float("nan")
        ok = sum(r["ok_total"] for r in out)
    else:
        window = duration
        ok = sum(r["ok_window"] for r in out)
    wall = t1 - t0
    busy = host1[0] - host0[0]
    total = host1[1] - host0[1]
    res = {
        "name": name,
        "connections_per_worker": spread,
        "connections": len(specs),
        "loadgen_processes": len(groups),
        "seconds": window,
        "requests": ok,
        "requests_total": sum(r["ok_total"] for r in out),
        "req_per_s": ok / window if window else 0.0,
        "records_per_request": records_per_request,
        "rec_per_s": ok * records_per_request / window if window else 0.0,
        "p50_ms": (pct(lat, 50) or 0) * 1000 if lat else None,
        "p99_ms": (pct(lat, 99) or 0) * 1000 if lat else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors[:10],
        "error_count": sum(v for k, v in statuses.items() if k != 200),
        "reconnects": sum(r["reconnects"] for r in out),
        "host_cpu_busy": busy / total if total else None,
        "server_cpu_cores": (srv1 - srv0) / wall if server_pid and wall > 0 else None,
        "loadgen_cpu_cores": sum(r["cpu_s"] for r in out) / window if window else None,
    }
    if total and wall > 0:
        # CPU used by anything else on the machine meanwhile (a sign of interference)
        busy_cores = busy / total * (os.cpu_count() or 1)
        res["other_cpu_cores"] = max(0.0, busy_cores - (res["server_cpu_cores"] or 0) - (res["loadgen_cpu_cores"] or 0))
    if any(s["kind"] == "read" for s in specs):
        res["records_read"] = sum(r["records_total"] for r in out)
        res["rec_per_s"] = res["records_read"] / window if window else 0.0
    if any(s["kind"] == "client" for s in specs):
        # The clients count records (a commit carries none; a fetch carries many).
        res["records_counted"] = sum(r["records_total"] for r in out)
        counted = res["records_counted"] if duration is None else sum(r["records_window"] for r in out)
        res["rec_per_s"] = counted / window if window else 0.0
        summary: dict = {}
        for r in out:
            for cs in r["clients"]:
                for k, v in cs.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        summary[k] = summary.get(k, 0) + v
                    else:
                        summary.setdefault(k, []).append(v)
        res["clients"] = summary
    return res


# =============================================================================== servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, logfile: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log:\n{Path(logfile).read_text()[-3000:]}")
        try:
            r = requests.get(url, timeout=1)
            if r.status_code == 200:
                return r.json() if r.content else {}
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout} s; log:\n{Path(logfile).read_text()[-3000:]}")


BARE_APP = textwrap.dedent('''
    """A bare Flask endpoint: parse the JSON body, answer a small JSON (the HTTP ceiling)."""
    import orjson
    from flask import Flask, Response, request

    app = Flask("bare")

    @app.post("/echo")
    def echo():
        body = orjson.loads(request.get_data())
        return Response(orjson.dumps({"ok": True, "n": len(body)}), mimetype="application/json")

    @app.get("/ready")
    def ready():
        return Response(b"{}", mimetype="application/json")
''')


def start_bare_flask(workdir: str, port: int, workers: int, threads: int) -> subprocess.Popen:
    app_dir = os.path.join(workdir, "bare")
    os.makedirs(app_dir, exist_ok=True)
    Path(app_dir, "bare_app.py").write_text(BARE_APP)
    logfile = os.path.join(workdir, "bare.log")
    # dlog's gunicorn settings (cli/gunicorn_app.py): gthread, keepalive 5, timeout 120.
    cmd = [sys.executable, "-m", "gunicorn", "--chdir", app_dir, "-k", "gthread", "-w", str(workers),
           "--threads", str(threads), "--keep-alive", "5", "--timeout", "120", "--graceful-timeout", "10",
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", "bare_app:app"]
    with open(logfile, "wb") as lf:
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True, cwd=app_dir)
    CLEANUP.popens.append(p)
    wait_ready(f"http://127.0.0.1:{port}/ready", p, logfile)
    return p


def dlog_command() -> list[str]:
    exe = Path(sys.executable).parent / "dlog"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "cli.main"]


def start_dlog(workdir: str, port: int, sync: str, workers: int | None, threads: int | None) -> subprocess.Popen:
    data_dir = os.path.join(workdir, "dlog-data")
    logfile = os.path.join(workdir, "dlog.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLOG_")}
    env["DLOG_SYNC"] = sync
    env["DLOG_LOG_LEVEL"] = os.environ.get("DLOG_LOG_LEVEL", "WARNING")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = dlog_command() + ["serve", "--data-dir", data_dir, "--port", str(port), "--brokers", "3"]
    if workers:
        cmd += ["--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    with open(logfile, "wb") as lf:
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO),
                             env=env)
    CLEANUP.popens.append(p)
    wait_ready(f"http://127.0.0.1:{port}/health/ready", p, logfile)
    return p


# =============================================================================== request bodies
def _b64_value(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(VALUE_BYTES)).decode()


def http_post(host: str, path: str, body: bytes, content_type: str, accept: str | None = None) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    if accept:
        head += f"Accept: {accept}\r\n"
    return head.encode() + b"\r\n" + body


def v3_single(host: str, cid: str, topic: str, acks: str, rng: random.Random) -> bytes:
    body = _dumps({"value": {"type": "BINARY", "data": _b64_value(rng)}})
    return http_post(host, f"/v3/clusters/{cid}/topics/{topic}/records?acks={acks}", body, "application/json")


def v3_batch(host: str, cid: str, topic: str, acks: str, rng: random.Random, n: int = BATCH) -> bytes:
    body = b"\n".join(_dumps({"value": {"type": "BINARY", "data": _b64_value(rng)}}) for _ in range(n))
    return http_post(host, f"/v3/clusters/{cid}/topics/{topic}/records?acks={acks}", body, "application/json")


def v2_records(host: str, topic: str, acks: str, rng: random.Random, n: int) -> bytes:
    body = _dumps({"records": [{"value": _b64_value(rng)} for _ in range(n)]})
    return http_post(host, f"/topics/{topic}/partitions/0?acks={acks}", body,
                     "application/vnd.kafka.binary.v2+json", "application/vnd.kafka.v2+json")


def bare_echo(host: str, rng: random.Random) -> bytes:
    body = _dumps({"value": {"type": "BINARY", "data": _b64_value(rng)}})  # the size of a single produce
    return http_post(host, "/echo", body, "application/json")


# =============================================================================== the run
def phase(results: dict, res: dict) -> dict:
    results["phases"][res["name"]] = res
    extra = ""
    if res.get("p50_ms") is not None:
        extra = f", p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms"
    cpu = ""
    if res.get("host_cpu_busy") is not None:
        cpu = f"; host CPU {res['host_cpu_busy']*100:.0f}%, server {res['server_cpu_cores'] or 0:.2f} cores, " \
              f"load gen {res['loadgen_cpu_cores'] or 0:.2f} cores"
    spread = res.get("connections_per_worker")
    conns = f"{res['connections']} conns" + (f" {'/'.join(map(str, spread))} per worker" if spread else "")
    log(f"{res['name']}: {res['req_per_s']:,.0f} req/s = {res['rec_per_s']:,.0f} rec/s{extra}"
        f" ({conns}, errors {res['error_count']}{cpu})")
    for e in res["errors"][:3]:
        log(f"   error: {e}")
    return res


def end_offset(base: str, topic: str, partition: int = 0) -> int:
    r = requests.get(f"{base}/topics/{topic}/partitions/{partition}/offsets", timeout=30)
    r.raise_for_status()
    return r.json()["end_offset"]


def wait_high_watermark(base: str, topic: str, target: int, timeout: float) -> float | None:
    """Seconds until the topic's high watermark reached ``target`` (None: not within ``timeout``)."""
    t0 = time.monotonic()
    while True:
        hw = end_offset(base, topic)
        if hw >= target:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            log(f"{topic}: high watermark {hw} still below {target} after {timeout:.0f} s")
            return None
        time.sleep(0.05)


def create_topic(base: str, cid: str, name: str, rf: int, partitions: int = 1) -> None:
    r = requests.post(f"{base}/v3/clusters/{cid}/topics",
                      json={"topic_name": name, "partitions_count": partitions, "replication_factor": rf}, timeout=30)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"create topic {name}: {r.status_code} {r.text}")


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy with other work right now (before this run starts anything)."""
    a = _host_cpu()
    time.sleep(seconds)
    b = _host_cpu()
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1) if b[1] > a[1] else 0.0


def run_benchmark(args, run, ratios, render) -> int:
    """Run a benchmark, clean up whatever happens (Ctrl-C, SIGTERM), print the table or JSON;
    the exit status is 1 if a check failed."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    t0 = time.monotonic()
    try:
        results = run(args)
        results["ratios"] = ratios(results)
        results["elapsed_s"] = time.monotonic() - t0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        # A second Ctrl-C (or a SIGTERM) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        CLEANUP.all()
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(render(results))
        print(f"(total run time {results['elapsed_s']:.0f} s)")
    return 0 if all(v["ok"] for v in results["checks"].values()) else 1
