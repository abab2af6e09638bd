"""The transactional copier (reliability.md R4, Kafka's ``transactions_test``; scenario 7.26)
against a real ``dlog serve``, with repeated kill -9 of the whole service.

The copier consumes topic ``in`` through a v2 consumer instance (read_committed, no
auto-commit, partitions assigned by hand), and copies each batch to topic ``out`` in one
transaction that also carries the input offsets reached (TxnOffsetCommit). A third of the
transactions are aborted on purpose, after which it seeks back to the committed offsets
(3.44). Whenever a call fails (the service was killed), it waits for the service, calls
InitProducerId again (which aborts or completes whatever the killed run left) and resumes
from the group's committed offsets, read stably (KIP-447). Meanwhile a killer thread kills
the whole process group with SIGKILL at random moments, checks every file's integrity and
restarts the service, and a reader thread reads ``out`` under read_committed all along.

At the end, under read_committed, ``out`` holds every input value exactly once (no loss, no
duplicate), in input order for the values of each input partition; no record of an aborted
transaction was ever visible, to the concurrent reader or at the end; the group's committed
offsets are the input's end offsets; nothing is left open or pending.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from tests.e2e.conftest import JSON_V2, integrity_check

from .process import Files, HttpError, HttpTxn

IN, OUT, GROUP, TID, INSTANCE = "in", "out", "copier-group", "copier-0", "copier-instance"
IN_PARTITIONS, OUT_PARTITIONS = 2, 3
VALUE_BYTES = len(json.dumps("v00000"))
V2_JSON = "application/vnd.kafka.v2+json"


def value_of(n: int) -> str:
    return f"v{n:05d}"


def number_of(value: str) -> int:
    return int(value[1:])


@dataclass
class Attempt:
    number: int
    values: list[str]
    outcome: str = "open"  # committed | aborted | unknown (commit sent, no answer)


@dataclass
class CopierLog:
    attempts: dict[int, Attempt] = field(default_factory=dict)
    restarts: int = 0
    commits: int = 0
    aborts: int = 0
    unstable_answers: int = 0


class Copier:
    """One transactional copier (transactional id ``copier-0``), run in a thread."""

    def __init__(self, dlog, total: int, batch: int, abort_p: float, seed: int, deadline: float) -> None:
        self.dlog = dlog
        self.total = total
        self.batch = batch
        self.abort_p = abort_p
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.log = CopierLog()
        self.committed: dict[int, int] = {}
        self.progress = 0  # input records covered by committed offsets
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.ends: dict[int, int] = {}

    # -------------------------------------------------------------- the loop
    def run(self) -> None:
        try:
            while not self.done.is_set():
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"copier not done: {self.progress}/{self.total}")
                try:
                    self._session()
                except (requests.RequestException, HttpError) as exc:
                    if isinstance(exc, HttpError) and exc.status < 500 and exc.kafka_error not in (
                            "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"):
                        raise
                    self.log.restarts += 1
                    self._wait_ready()
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.done.set()

    def _wait_ready(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                if requests.get(self.dlog.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)

    def _session(self) -> None:
        http = HttpTxn(self.dlog, timeout=20)
        try:
            pid, epoch = self._init(http)
            self._ensure_instance(http)
            self.committed = self._committed_offsets(http)
            self._seek(http, self.committed)
            while True:
                self.progress = sum(self.committed.values())
                if all(self.committed[p] >= self.ends[p] for p in range(IN_PARTITIONS)):
                    self.done.set()
                    return
                epoch = self._one_transaction(http, pid, epoch)
        finally:
            http.close()

    def _one_transaction(self, http: HttpTxn, pid: int, epoch: int) -> int:
        records = self._poll(http)
        if not records:
            time.sleep(0.02)
            return epoch
        attempt = Attempt(len(self.log.attempts) + 1, [r["value"] for r in records])
        self.log.attempts[attempt.number] = attempt
        positions = dict(self.committed)
        by_out: dict[int, list[str]] = {}
        for r in records:
            positions[r["partition"]] = r["offset"] + 1
            by_out.setdefault(number_of(r["value"]) % OUT_PARTITIONS, []).append(r["value"])
        out = []
        for p, values in sorted(by_out.items()):
            out += HttpTxn.txn_records(TID, pid, epoch, p, values, 0, key=attempt.number)
        commit = self.rng.random() >= self.abort_p
        try:
            http.produce(OUT, out)
            http.txn_offsets(TID, pid, epoch, GROUP, {(IN, p): o for p, o in positions.items()})
        except BaseException:
            attempt.outcome = "aborted"  # no EndTxn(commit) was sent: the next init aborts it
            raise
        try:
            answer = http.end(TID, pid, epoch, commit)
        except BaseException:
            attempt.outcome = "unknown" if commit else "aborted"
            raise
        attempt.outcome = "committed" if commit else "aborted"
        if commit:
            self.log.commits += 1
            self.committed = positions
        else:
            self.log.aborts += 1
            self._seek(http, self.committed)  # 3.44: an abort does not rewind the consumer
        return answer["producer_epoch"]

    # -------------------------------------------------------------- calls
    def _init(self, http: HttpTxn) -> tuple[int, int]:
        while True:
            try:
                return http.init(TID, timeout_ms=60_000)
            except HttpError as exc:
                if exc.kafka_error != "CONCURRENT_TRANSACTIONS":
                    raise
                time.sleep(0.05)

    def _ensure_instance(self, http: HttpTxn) -> None:
        resp = http.session.post(f"{http.url}/consumers/{GROUP}", timeout=http.timeout, headers={
            "Content-Type": V2_JSON}, data=json.dumps({
                "name": INSTANCE, "format": "json", "isolation.level": "read_committed",
                "auto.commit.enable": "false", "auto.offset.reset": "earliest"}))
        if resp.status_code not in (200, 409):
            raise HttpError(resp)
        resp = http.session.post(f"{http.url}/consumers/{GROUP}/instances/{INSTANCE}/assignments",
                                 timeout=http.timeout, headers={"Content-Type": V2_JSON},
                                 data=json.dumps({"partitions": [{"topic": IN, "partition": p}
                                                                 for p in range(IN_PARTITIONS)]}))
        if resp.status_code != 204:
            raise HttpError(resp)

    def _committed_offsets(self, http: HttpTxn) -> dict[int, int]:
        """The group's committed offsets through the read_committed instance: stable, so a
        503 UNSTABLE_OFFSET_COMMIT means a transaction still holds them; retry."""
        body = json.dumps({"partitions": [{"topic": IN, "partition": p} for p in range(IN_PARTITIONS)]})
        while True:
            resp = http.session.get(f"{http.url}/consumers/{GROUP}/instances/{INSTANCE}/offsets", data=body,
                                    headers={"Content-Type": V2_JSON, "Accept": V2_JSON}, timeout=http.timeout)
            if resp.status_code == 503 and resp.json().get("kafka_error") == "UNSTABLE_OFFSET_COMMIT":
                self.log.unstable_answers += 1
                time.sleep(0.05)
                continue
            if resp.status_code != 200:
                raise HttpError(resp)
            return {o["partition"]: max(o["offset"], 0) for o in resp.json()["offsets"]}

    def _seek(self, http: HttpTxn, offsets: dict[int, int]) -> None:
        resp = http.session.post(f"{http.url}/consumers/{GROUP}/instances/{INSTANCE}/positions",
                                 timeout=http.timeout, headers={"Content-Type": V2_JSON}, data=json.dumps({
                                     "offsets": [{"topic": IN, "partition": p, "offset": o}
                                                 for p, o in offsets.items()]}))
        if resp.status_code != 204:
            raise HttpError(resp)

    def _poll(self, http: HttpTxn) -> list[dict]:
        resp = http.session.get(f"{http.url}/consumers/{GROUP}/instances/{INSTANCE}/records",
                                params={"timeout": 200, "max_bytes": VALUE_BYTES * self.batch},
                                headers={"Accept": JSON_V2}, timeout=http.timeout)
        if resp.status_code != 200:
            raise HttpError(resp)
        return resp.json()


class Reader:
    """A read_committed reader of ``out`` running all along (stateless reads, any errors
    while the service is down are skipped). Keeps (partition, offset) -> (value, attempt)."""

    def __init__(self, dlog) -> None:
        self.dlog = dlog
        self.seen: dict[tuple[int, int], tuple[str, int]] = {}
        self.inconsistent: list = []
        self.stop = threading.Event()
        self.positions = {p: 0 for p in range(OUT_PARTITIONS)}

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            for p in range(OUT_PARTITIONS):
                try:
                    resp = session.get(f"{self.dlog.url}/topics/{OUT}/partitions/{p}/records",
                                       params={"offset": self.positions[p], "isolation_level": "read_committed"},
                                       headers={"Accept": JSON_V2}, timeout=5)
                except requests.RequestException:
                    session.close()
                    session = requests.Session()
                    time.sleep(0.05)
                    continue
                if resp.status_code != 200:
                    continue
                for r in resp.json():
                    got = (r["value"], r["key"])
                    old = self.seen.setdefault((p, r["offset"]), got)
                    if old != got:
                        self.inconsistent.append((p, r["offset"], old, got))
                self.positions[p] = int(resp.headers["X-Dlog-Next-Offset"])
            time.sleep(0.02)
        session.close()


def run_copier(dlog_procs, total: int, kills: int, batch: int, seed: int, time_limit: float) -> dict:
    rng = random.Random(seed)
    dlog = dlog_procs(workers=2, threads=4).start()
    dlog.create_topic(IN, IN_PARTITIONS, 3)
    dlog.create_topic(OUT, OUT_PARTITIONS, 3)
    http = HttpTxn(dlog)
    for p in range(IN_PARTITIONS):
        numbers = list(range(p, total, IN_PARTITIONS))
        for i in range(0, len(numbers), 500):
            http.plain(IN, p, [value_of(n) for n in numbers[i:i + 500]])
    ends = {p: http.partition(IN, p)["high_watermark"] for p in range(IN_PARTITIONS)}
    assert sum(ends.values()) == total
    http.close()

    copier = Copier(dlog, total, batch, abort_p=1 / 3, seed=seed, deadline=time.monotonic() + time_limit)
    copier.ends = ends
    reader = Reader(dlog)
    threads = [threading.Thread(target=copier.run, daemon=True), threading.Thread(target=reader.run, daemon=True)]
    for t in threads:
        t.start()
    kill_log = []
    try:
        # Kill when the copy has made progress past random thresholds, at a random moment.
        thresholds = sorted(rng.uniform(0.1, 0.7) * total for _ in range(kills))
        for threshold in thresholds:
            while copier.progress < threshold and not copier.done.is_set():
                time.sleep(0.005)
            if copier.done.is_set():
                break
            time.sleep(rng.uniform(0, 0.25))
            dlog.kill9()
            checks = integrity_check(dlog.data_dir)
            assert checks and all(v == "ok" for v in checks.values()), checks
            kill_log.append(copier.progress)
            dlog.start()
        assert copier.done.wait(max(1.0, copier.deadline - time.monotonic())), "copier did not finish"
    finally:
        copier.done.set()
        reader.stop.set()
        for t in threads:
            t.join(30)
    if copier.error is not None:
        raise copier.error
    return {"dlog": dlog, "copier": copier, "reader": reader, "kills": kill_log, "ends": ends}


def check_copy(result: dict, total: int, expected_kills: int) -> None:
    dlog, copier, reader = result["dlog"], result["copier"], result["reader"]
    attempts = copier.log.attempts
    assert len(result["kills"]) == expected_kills, result["kills"]
    assert copier.log.aborts > 0 and copier.log.commits > 0
    http = HttpTxn(dlog)
    settled = http.wait_settled(OUT, range(OUT_PARTITIONS))
    for p, s in settled.items():
        assert s["last_stable_offset"] == s["high_watermark"] == s["log_end_offset"], (p, s)
    out: list[tuple[int, int, str, int]] = []
    for p in range(OUT_PARTITIONS):
        resp_records = []
        offset = 0
        while True:
            page, nxt = http.read_page(OUT, p, offset, "read_committed")
            resp_records += page
            if nxt == offset:
                break
            offset = nxt
        out += [(p, r["offset"], r["value"], r["key"]) for r in resp_records]
    values = [v for _p, _o, v, _k in out]
    expected = [value_of(n) for n in range(total)]
    missing = sorted(set(expected) - set(values))
    duplicates = sorted(v for v, n in Counter(values).items() if n > 1)
    assert not missing and not duplicates, (f"{len(missing)} missing, e.g. {missing[:10]}; "
                                            f"{len(duplicates)} duplicated, e.g. {duplicates[:10]}")
    assert sorted(values) == expected
    # No record of an aborted transaction is visible, now or to the reader at any time.
    for p, o, v, key in out:
        assert attempts[key].outcome in ("committed", "unknown"), (p, o, v, attempts[key])
        assert number_of(v) % OUT_PARTITIONS == p
    assert not reader.inconsistent, reader.inconsistent[:5]
    for (p, o), (v, key) in reader.seen.items():
        assert attempts[key].outcome in ("committed", "unknown"), (p, o, v, attempts[key])
    seen_values = [v for v, _k in reader.seen.values()]
    assert len(seen_values) == len(set(seen_values)), "the concurrent reader saw a value twice"
    # Order: the values of each input partition keep their input order in each output partition.
    ordered = sorted(out)
    for p in range(OUT_PARTITIONS):
        for source in range(IN_PARTITIONS):
            seq = [number_of(v) for q, _o, v, _k in ordered if q == p and number_of(v) % IN_PARTITIONS == source]
            assert seq == sorted(seq), (p, source)
    # The group's offsets are the input's end offsets; nothing is open or pending.
    assert http.group_offsets(GROUP) == {(IN, p): o for p, o in result["ends"].items()}
    assert http.describe(TID)["state"] == "CompleteCommit"
    files = Files(dlog.data_dir)
    assert files.pending_offsets() == []
    http.close()
    dlog.kill9()
    checks = integrity_check(dlog.data_dir)
    assert checks and all(v == "ok" for v in checks.values()), checks


def _summary(result: dict) -> str:
    log = result["copier"].log
    unknown = sum(a.outcome == "unknown" for a in log.attempts.values())
    return (f"commits={log.commits} aborts={log.aborts} restarts={log.restarts} unstable={log.unstable_answers} "
            f"unknown={unknown} kills at progress {result['kills']}")


def test_copier_exactly_once_under_kill9(dlog_procs):
    """Default size: 500 records in transactions of at most 20, 3 kills of the service."""
    result = run_copier(dlog_procs, total=500, kills=3, batch=20, seed=4, time_limit=90)
    print(_summary(result))
    check_copy(result, 500, 3)
    assert result["copier"].log.restarts >= 1


@pytest.mark.slow
def test_copier_exactly_once_under_kill9_full(dlog_procs):
    """Full size (R4's numbers): 20,000 records in transactions of at most 100, 10 kills of
    the service."""
    result = run_copier(dlog_procs, total=20_000, kills=10, batch=100, seed=26, time_limit=900)
    print(_summary(result))
    check_copy(result, 20_000, 10)
    assert result["copier"].log.restarts >= 1
