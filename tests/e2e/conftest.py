"""End-to-end fixtures: ``dlog serve`` as a real process group, spoken to over real HTTP.

``DlogProcess`` starts ``dlog serve`` in its own session (``start_new_session=True``), so
"kill -9 the service" is ``os.killpg(pgid, SIGKILL)`` as the reliability plan's harness
conventions (reliability.md §6.2) define it. Every process started here is killed at fixture
teardown and again at interpreter exit, so a failing test leaves nothing running.

Tests marked ``slow`` run only with ``--run-slow`` (defined by tests/conftest.py).
"""
from __future__ import annotations

import atexit
import base64
import gc
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import pytest
import requests

DLOG = str(Path(sys.executable).with_name("dlog"))
JSON = "application/json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"

_LIVE: set["DlogProcess"] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- /proc helpers
def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and ')'


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]), int(fields[2]))


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a process in clock ticks (0 if it is gone)."""
    fields = _stat_fields(pid)
    return 0 if fields is None else int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15 of proc(5)


def _all_pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) children of ``pid``, found through /proc (no psutil)."""
    found = []
    for p in _all_pids():
        st = _stat(p)
        if st is not None and st[1] == pid and st[0] != "Z":
            found.append(p)
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    found = []
    for p in _all_pids():
        st = _stat(p)
        if st is not None and st[2] == pgid and st[0] != "Z":
            found.append(p)
    return sorted(found)


def pid_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def integrity_check(data_dir: str | os.PathLike) -> dict[str, str]:
    """``PRAGMA integrity_check`` of every ``*.db`` file in ``data_dir`` (opened directly)."""
    results = {}
    for path in sorted(Path(data_dir).glob("*.db")):
        con = sqlite3.connect(str(path), timeout=30)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
            results[path.name] = "; ".join(r[0] for r in rows)
        finally:
            con.close()
    return results


# ---------------------------------------------------------------------------- the process
class DlogProcess:
    """``dlog serve`` on a free port and a data directory, in its own process group.

    ``start()`` waits for ``/health/ready``; ``stop()`` sends SIGTERM to the gunicorn master
    (a clean shutdown); ``kill9()`` sends SIGKILL to the whole process group; ``restart()``
    stops (or kills) and starts again on the same port and data directory.
    """

    def __init__(self, data_dir: str | os.PathLike, *, log_path: str | os.PathLike | None = None,
                 port: int | None = None, brokers: int = 3, workers: int = 2, threads: int = 4,
                 env: dict[str, str] | None = None, ready_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        self.port = port or free_port()
        self.brokers = brokers
        self.workers = workers
        self.threads = threads
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.starts = 0
        self.session = requests.Session()
        self._cid: str | None = None

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def command(self) -> list[str]:
        return [DLOG, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--brokers", str(self.brokers), "--workers", str(self.workers), "--threads", str(self.threads)]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLOG_")}
        env.setdefault("DLOG_LOG_LEVEL", "INFO")
        env.update(self.extra_env)
        return env

    def start(self) -> "DlogProcess":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.environment(),
                                         start_new_session=True)
        self.pgid = self.proc.pid  # a new session's leader leads its own process group
        self.starts += 1
        _LIVE.add(self)
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.kill9()
            raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Poll ``/health/ready`` until it answers 200; fail early if the master exits."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dlog serve exited with {self.proc.returncode} before it was ready\n"
                                   f"{self.log_tail()}")
            try:
                with requests.get(self.url + "/health/ready", timeout=2) as r:
                    if r.status_code == 200:
                        return r.json()
                    last = (r.status_code, r.text[:200])
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"dlog serve not ready after {timeout}s (last: {last!r})\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the live children of the master."""
        return children_of(self.pid)

    def wait_workers(self, count: int | None = None, timeout: float = 30.0,
                     exclude: Iterable[int] = ()) -> list[int]:
        """Wait until the master has ``count`` (default ``workers``) live workers, none of them
        in ``exclude`` (for example a worker just killed); returns their pids."""
        count = self.workers if count is None else count
        exclude = set(exclude)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) == count and not exclude.intersection(self.worker_pids()):
                return pids
            time.sleep(0.05)
        raise TimeoutError(f"workers {self.worker_pids()} (want {count}, not {sorted(exclude)})\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the master (gunicorn's graceful shutdown); SIGKILL to the group after
        ``timeout``. Returns the master's exit status."""
        if self.proc is None:
            return None
        # A kept-alive connection holds a worker's graceful exit for 2 s (gthread's linger):
        # close ours, including those still referenced by unreachable responses.
        self.session.close()
        gc.collect()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg()
                self.proc.wait(10)
        self._reap_group()
        _LIVE.discard(self)
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL to the whole process group (master and workers at once), then wait until
        every member is gone."""
        if self.proc is None:
            return
        self._killpg()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        self._reap_group()
        _LIVE.discard(self)

    def restart(self, kill: bool = False) -> "DlogProcess":
        """Stop (SIGTERM, or SIGKILL to the group with ``kill=True``) and start again on the
        same port and data directory."""
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def _killpg(self) -> None:
        # Only while the group has members: a process group id cannot be reused while a
        # member lives, so this never signals someone else's group.
        if self.pgid is None or not (self.running or group_members(self.pgid)):
            return
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap_group(self, timeout: float = 10.0) -> None:
        """Make sure no member of the group outlives the master (workers are orphaned, not
        killed, when only the master dies)."""
        if self.pgid is None:
            return
        deadline = time.monotonic() + timeout
        while group_members(self.pgid):
            self._killpg()
            if time.monotonic() > deadline:
                raise RuntimeError(f"process group {self.pgid} survives SIGKILL: {group_members(self.pgid)}")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -------------------------------------------------------------- HTTP helpers
    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.post(self.url + path, **kw)

    def cluster_id(self) -> str:
        r = self.get("/v3/clusters")
        r.raise_for_status()
        return r.json()["data"][0]["cluster_id"]

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     configs: dict[str, str] | None = None) -> dict:
        body: dict[str, Any] = {"topic_name": name, "partitions_count": partitions,
                                "replication_factor": replication_factor}
        if configs:
            body["configs"] = [{"name": k, "value": v} for k, v in configs.items()]
        r = self.post(f"/v3/clusters/{self.cluster_id()}/topics", json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def produce_v3(self, topic: str, records: list[dict], acks: str = "1",
                   session: requests.Session | None = None, timeout: float = 30) -> tuple[int, list[dict]]:
        """One v3 produce of concatenated records; (status, one report per record)."""
        body = "".join(json.dumps(r) for r in records)
        r = (session or self.session).post(f"{self.url}/v3/clusters/{self.cluster_id_cached()}/topics/{topic}/records",
                                           params={"acks": acks}, data=body,
                                           headers={"Content-Type": JSON}, timeout=timeout)
        return r.status_code, parse_reports(r.text)

    def cluster_id_cached(self) -> str:
        if self._cid is None:
            self._cid = self.cluster_id()
        return self._cid

    def read_partition(self, topic: str, partition: int, start: int = 0, end: int | None = None,
                       max_bytes: int = 4 * 1024 * 1024, accept: str = BINARY_V2) -> list[dict]:
        """Every record of a partition from ``start`` through the stateless read, page by page,
        until ``end`` (default: the high watermark at the first call)."""
        if end is None:
            end = self.offsets(topic, partition)["end_offset"]
        out: list[dict] = []
        offset = start
        while offset < end:
            r = self.get(f"/topics/{topic}/partitions/{partition}/records",
                         params={"offset": offset, "max_bytes": max_bytes}, headers={"Accept": accept})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page, f"empty read at offset {offset} below end {end}"
            for rec in page:
                if rec["offset"] >= end:
                    break
                out.append(rec)
            offset = page[-1]["offset"] + 1
        return out

    def offsets(self, topic: str, partition: int) -> dict:
        r = self.get(f"/topics/{topic}/partitions/{partition}/offsets")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_high_watermark(self, topic: str, partition: int, timeout: float = 30.0) -> dict:
        """The v3 partition once its high watermark reached its log end offset (followers
        caught up), or as it is when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.partition_state(topic, partition)
            if state["high_watermark"] == state["log_end_offset"] or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def partition_state(self, topic: str, partition: int) -> dict:
        r = self.get(f"/v3/clusters/{self.cluster_id_cached()}/topics/{topic}/partitions/{partition}")
        assert r.status_code == 200, r.text
        return r.json()

    def __repr__(self) -> str:
        return f"DlogProcess(pid={self.proc.pid if self.proc else None}, url={self.url}, data_dir={self.data_dir})"


def parse_reports(text: str) -> list[dict]:
    """The ``\\r\\n``-separated delivery reports of a v3 produce (or one error body)."""
    return [json.loads(line) for line in text.split("\r\n") if line.strip()]


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_LIVE):
        p.kill9()


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def dlog_factory(tmp_path):
    """Make ``DlogProcess`` objects (not started) under ``tmp_path``; all are killed at the end."""
    made: list[DlogProcess] = []

    def make(name: str = "data", **kw) -> DlogProcess:
        kw.setdefault("log_path", tmp_path / f"{name}.log")
        p = DlogProcess(tmp_path / name, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            if p.running:
                p.stop(timeout=10)
        finally:
            p.kill9()  # whatever is left of the group


@pytest.fixture
def dlog(dlog_factory) -> DlogProcess:
    """A started three-broker service with 2 workers x 4 threads."""
    return dlog_factory().start()


# ---------------------------------------------------------------------------- the oracle
def check_log(dlog: DlogProcess, topic: str, partitions: Iterable[int], histories: Iterable[dict],
              catch_up_timeout: float = 30.0) -> dict:
    """Read every partition back through HTTP and check it against client histories.

    ``histories`` are ``Producer.history()`` dicts. Returns a summary with lists of problems;
    the caller asserts on them. It first waits (up to ``catch_up_timeout``) for each high
    watermark to reach the log end offset, as followers catch up. Checked: offsets dense from the log start (0) to the high
    watermark, which equals the log end offset; every acknowledged value stored exactly once,
    at its reported (partition, offset); no two acknowledged values with one offset; no value
    stored twice; no value stored that was not sent (acked or unknown); no definitely failed
    (or refused, never sent) value stored.
    """
    histories = list(histories)
    acked: dict[str, tuple[int, int]] = {}
    unknown: set[str] = set()
    failed: set[str] = set()
    for h in histories:
        for v, (p, o) in h["acked"].items():
            acked[v] = (p, o)
        unknown.update(h["unknown"])
        failed.update(h["failed"])
        failed.update(h.get("refused", ()))
    problems: dict[str, list] = {k: [] for k in (
        "not_dense", "hw_below_leo", "lost", "moved", "offset_shared", "duplicated", "phantom", "failed_but_stored")}
    by_offset: dict[tuple[int, int], str] = {}
    for v, po in acked.items():
        if po in by_offset:
            problems["offset_shared"].append((po, by_offset[po], v))
        by_offset[po] = v
    stored: dict[str, list[tuple[int, int]]] = {}
    ends = {}
    for p in partitions:
        state = dlog.wait_high_watermark(topic, p, timeout=catch_up_timeout)
        start, leo, hw = state["log_start_offset"], state["log_end_offset"], state["high_watermark"]
        ends[p] = hw
        if hw != leo:
            problems["hw_below_leo"].append((p, hw, leo))
        records = dlog.read_partition(topic, p, start=start, end=leo)
        offsets = [r["offset"] for r in records]
        if start != 0 or offsets != list(range(start, leo)):
            missing = sorted(set(range(start, leo)) - set(offsets))
            problems["not_dense"].append((p, start, leo, missing[:20], len(offsets)))
        for r in records:
            value = json.loads(unb64(r["value"]))
            stored.setdefault(value, []).append((p, r["offset"]))
    for v, places in stored.items():
        if len(places) > 1:
            problems["duplicated"].append((v, places))
        if v in failed:
            problems["failed_but_stored"].append((v, places))
        elif v not in acked and v not in unknown:
            problems["phantom"].append((v, places))
    for v, po in acked.items():
        places = stored.get(v)
        if not places:
            problems["lost"].append((v, po))
        elif po not in places:
            problems["moved"].append((v, po, places))
    unknown_stored = sum(1 for v in unknown if v in stored)
    refused = sum(len(h.get("refused", ())) for h in histories)
    return {"acked": len(acked), "unknown": len(unknown), "unknown_stored": unknown_stored,
            "failed": len(failed) - refused, "refused": refused,
            "stored": sum(len(x) for x in stored.values()), "ends": ends,
            "problems": {k: v[:20] for k, v in problems.items() if v}}


def server_log_errors(dlog: DlogProcess, allow: Iterable[str] = ()) -> list[str]:
    """Lines of the service log that mean trouble (locked databases, tracebacks, 500s,
    gunicorn errors), except those containing one of ``allow``."""
    bad = ("database is locked", "Traceback", "unexpected error", "unknown server error", "[CRITICAL]", "[ERROR]",
           " ERROR ")
    allow = tuple(allow)
    return [line for line in dlog.log_text().splitlines()
            if any(b in line for b in bad) and not any(a in line for a in allow)]
