"""Workload clients: HTTP client threads that record every operation in a history.

Each client is one logical Jepsen "process" with its own ``requests`` session. Outcomes
follow reliability.md §6.2 and the API's error contract:

* ``ok``: a 2xx answer;
* ``fail``: definitely not done: a 4xx (409 fenced, out of order, ...), a refused connection
  (nothing was sent), or a 503 whose Kafka error is checked before anything is written
  (NOT_ENOUGH_REPLICAS, CONCURRENT_TRANSACTIONS, ...);
* ``info``: indefinite: 504 REQUEST_TIMED_OUT, any other 5xx, a reset connection, a timeout.

A key is ``"<topic>/<partition>"``; every value is a unique integer (or, for the copier, a
unique string) stored as the record's JSON value.
"""
from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

from .history import HistoryRecorder

JSON = "application/json"
# 503 errors raised by checks that run before anything is written: definite failures.
DEFINITE_RETRIABLE = frozenset({"NOT_ENOUGH_REPLICAS", "CONCURRENT_TRANSACTIONS", "LEADER_NOT_AVAILABLE",
                                "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE",
                                "UNSTABLE_OFFSET_COMMIT", "REBALANCE_IN_PROGRESS"})


def key_of(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def split_key(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition("/")
    return topic, int(partition)


@dataclass
class Answer:
    """One HTTP exchange, classified."""

    kind: str  # ok | fail | info
    status: int | None
    body: Any = None
    text: str = ""
    error: str | None = None  # kafka_error, or a short description
    headers: dict = field(default_factory=dict)

    @property
    def retriable(self) -> bool:
        return self.kind == "info" or self.status is None or self.status >= 500


class Stats:
    """Counters shared by the clients of one run (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.bad: list[str] = []  # 500s, 'database is locked', malformed answers: always bugs
        self.five_xx: list[str] = []
        self.requests = 0

    def count(self, answer: Answer, what: str) -> None:
        with self._lock:
            self.requests += 1
            label = str(answer.status) if answer.status is not None else (answer.error or "error")
            self.statuses[label] = self.statuses.get(label, 0) + 1
            if answer.status is not None and answer.status >= 500:
                self.five_xx.append(f"{what}: {answer.status} {answer.text[:200]}")
            if (answer.status is not None and answer.status >= 500 and answer.status not in (503, 504)) \
                    or "database is locked" in answer.text:
                self.bad.append(f"{what}: {answer.status} {answer.text[:300]}")

    def note_bad(self, message: str) -> None:
        with self._lock:
            self.bad.append(message)

    def summary(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "statuses": dict(sorted(self.statuses.items())),
                    "bad": self.bad[:20], "bad_count": len(self.bad), "five_xx_count": len(self.five_xx),
                    "five_xx": self.five_xx[:10]}


class Api:
    """A client's view of the service: one session, classified answers."""

    def __init__(self, url: str, cluster_id: str, stats: Stats, timeout: float = 10.0) -> None:
        self.url = url
        self.cid = cluster_id
        self.stats = stats
        self.timeout = timeout
        self.session = requests.Session()

    def reset(self) -> None:
        self.session.close()
        self.session = requests.Session()

    def call(self, method: str, path: str, what: str, **kw) -> Answer:
        kw.setdefault("timeout", self.timeout)
        try:
            r = self.session.request(method, self.url + path, **kw)
            text = r.text
        except requests.ConnectionError as exc:
            self.reset()
            refused = "Connection refused" in str(exc) or "Errno 111" in str(exc)
            a = Answer("fail" if refused else "info", None, error="refused" if refused else "connection")
            self.stats.count(a, what)
            return a
        except requests.RequestException as exc:
            self.reset()
            a = Answer("info", None, error=type(exc).__name__)
            self.stats.count(a, what)
            return a
        body = None
        if text:
            try:
                body = r.json()
            except ValueError:
                body = None
        error = body.get("kafka_error") if isinstance(body, dict) else None
        if 200 <= r.status_code < 300:
            kind = "ok"
        elif r.status_code == 504:
            kind = "info"
        elif r.status_code >= 500:
            kind = "fail" if error in DEFINITE_RETRIABLE else "info"
        else:
            kind = "fail"
        a = Answer(kind, r.status_code, body, text, error or (None if kind == "ok" else f"HTTP {r.status_code}"),
                   dict(r.headers))
        self.stats.count(a, what)
        return a

    def post(self, path: str, what: str, **kw) -> Answer:
        return self.call("POST", path, what, **kw)

    def get(self, path: str, what: str, **kw) -> Answer:
        return self.call("GET", path, what, **kw)

    # ------------------------------------------------------------------ shapes
    def produce(self, topic: str, records: list[dict], acks: str = "all", timeout_ms: int = 5000) -> Answer:
        body = "".join(json.dumps(r) for r in records)
        a = self.post(f"/v3/clusters/{self.cid}/topics/{topic}/records", "produce",
                      params={"acks": acks, "timeout_ms": timeout_ms}, data=body, headers={"Content-Type": JSON})
        if a.kind == "ok":
            try:
                a.body = [json.loads(line) for line in a.text.split("\r\n") if line.strip()]
            except ValueError:
                self.stats.note_bad(f"unparseable produce answer: {a.text[:200]}")
                a.kind, a.error = "info", "unparseable"
                return a
            failed = [r for r in a.body if r.get("error_code") != 200]
            if len(a.body) != len(records):
                self.stats.note_bad(f"{len(a.body)} reports for {len(records)} records: {a.text[:200]}")
                a.kind, a.error = "info", "report count"
            elif failed:
                # One partition per request here: a partial failure is the partition's error.
                a.error = failed[0].get("kafka_error") or str(failed[0].get("error_code"))
                code = failed[0].get("error_code") or 500
                a.kind = "info" if code >= 500 and a.error not in DEFINITE_RETRIABLE else "fail"
        return a

    def read(self, topic: str, partition: int, offset: int, isolation: str = "read_uncommitted",
             max_bytes: int = 64 * 1024) -> Answer:
        a = self.get(f"/topics/{topic}/partitions/{partition}/records", "read",
                     params={"offset": offset, "max_bytes": max_bytes, "isolation_level": isolation},
                     headers={"Accept": "application/vnd.kafka.binary.v2+json"})
        if a.kind == "ok":
            a.body = [(r["offset"], decode_value(r["value"])) for r in a.body]
        return a

    def partition(self, topic: str, partition: int) -> Answer:
        return self.get(f"/v3/clusters/{self.cid}/topics/{topic}/partitions/{partition}", "partition")


def decode_value(b64: str | None) -> Any:
    if b64 is None:
        return None
    raw = base64.b64decode(b64)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def record(partition: int, value: Any, producer: tuple[int, int, int] | None = None,
           transactional_id: str | None = None) -> dict:
    r: dict = {"partition_id": partition, "value": {"type": "JSON", "data": value}}
    if producer is not None:
        r["producer_id"], r["producer_epoch"], r["sequence"] = producer
    if transactional_id is not None:
        r["transactional_id"] = transactional_id
    return r


class ValueSource:
    """Globally unique integer values for every producer of a run."""

    def __init__(self, start: int = 0) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def take(self, n: int) -> list[int]:
        with self._lock:
            return [next(self._counter) for _ in range(n)]


# ---------------------------------------------------------------------------- producers
class IdempotentProducer:
    """An idempotent producer (acks=all): each op is one batch to one partition; indefinite
    attempts are retried with the same sequence (the service answers a retry of one of the
    last five batches with the original offsets), until ``op_timeout``.

    An op that ends indefinite makes the producer take a new producer id, as Kafka's client
    does when a sequence's fate is unknown: reusing the sequence for different records could
    be answered as a duplicate of the unknown batch.
    """

    def __init__(self, name: str, api: Api, history: HistoryRecorder, topic: str, partitions: list[int],
                 values: ValueSource, rng: random.Random, *, max_batch: int = 10, acks: str = "all",
                 op_timeout: float = 20.0, backoff: float = 0.05, retry: bool = True, timeout_ms: int = 5000) -> None:
        self.name = name
        self.api = api
        self.history = history
        self.topic = topic
        self.partitions = partitions
        self.values = values
        self.rng = rng
        self.max_batch = max_batch
        self.acks = acks
        self.op_timeout = op_timeout
        self.backoff = backoff
        self.retry = retry
        self.timeout_ms = timeout_ms
        self.producer_id: int | None = None
        self.epoch = 0
        self.sequences: dict[int, int] = {}
        self.acked = 0
        self.duplicates_answered = 0
        self.errors: dict[str, int] = {}
        self.unexpected: list[str] = []

    def init(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            a = self.api.post(f"/v3/clusters/{self.api.cid}/producers", "init-producer", json={})
            if a.kind == "ok":
                self.producer_id, self.epoch = a.body["producer_id"], a.body["producer_epoch"]
                self.sequences = {}
                return True
            time.sleep(self.backoff)
        return False

    def send_one(self, partition: int | None = None) -> str:
        """One send op (to ``partition``, or one drawn at random); returns its type."""
        if self.producer_id is None and not self.init(time.monotonic() + self.op_timeout):
            return "fail"
        partition = self.rng.choice(self.partitions) if partition is None else partition
        n = self.rng.randint(1, self.max_batch)
        values = self.values.take(n)
        k = key_of(self.topic, partition)
        op = self.history.invoke(self.name, "send", [["send", k, v] for v in values])
        seq = self.sequences.get(partition, 0)
        records = [record(partition, v, (self.producer_id, self.epoch, seq + i)) for i, v in enumerate(values)]
        deadline = time.monotonic() + self.op_timeout
        indefinite = False
        last: Answer | None = None
        while True:
            last = self.api.produce(self.topic, records, self.acks, self.timeout_ms)
            if last.kind == "ok":
                reports = last.body
                if any(r.get("duplicate") for r in reports):
                    self.duplicates_answered += 1
                self.sequences[partition] = seq + n
                self.acked += n
                self.history.complete(op, "ok", [["send", k, [r["offset"], v]] for r, v in zip(reports, values)],
                                      duplicate=any(r.get("duplicate") for r in reports) or None)
                return "ok"
            self.errors[last.error or "?"] = self.errors.get(last.error or "?", 0) + 1
            if last.error in ("OUT_OF_ORDER_SEQUENCE_NUMBER", "INVALID_PRODUCER_EPOCH", "UNKNOWN_SERVER_ERROR"):
                self.unexpected.append(f"{self.name} seq {seq}: {last.status} {last.text[:200]}")
            if last.kind == "info":
                indefinite = True
            definite_final = last.kind == "fail" and last.status is not None and last.status < 500
            if definite_final or not self.retry or time.monotonic() >= deadline:
                break
            time.sleep(self.backoff)
        if indefinite:
            self.history.complete(op, "info", [["send", k, [None, v]] for v in values], error=last.error)
            self.producer_id = None  # a new producer id for the next op (see the class docstring)
            return "info"
        self.history.complete(op, "fail", [["send", k, [None, v]] for v in values], error=last.error)
        return "fail"

    def run(self, stop: threading.Event, max_values: int | None = None, pause: float = 0.0) -> None:
        while not stop.is_set() and (max_values is None or self.acked < max_values):
            kind = self.send_one()
            if kind != "ok":
                time.sleep(self.backoff)
            elif pause:
                time.sleep(pause)


# ---------------------------------------------------------------------------- consumers
class Poller:
    """An assigned consumer over stateless reads: it keeps its own position per key and reads
    from there (``X-Dlog-Next-Offset`` moves it past transaction markers). One op per read."""

    def __init__(self, name: str, api: Api, history: HistoryRecorder, keys: list[str],
                 isolation: str = "read_uncommitted", max_bytes: int = 16 * 1024) -> None:
        self.name = name
        self.api = api
        self.history = history
        self.keys = keys
        self.isolation = isolation
        self.max_bytes = max_bytes
        self.positions = {k: 0 for k in keys}
        self.seen: dict[str, list[tuple[int, Any]]] = {k: [] for k in keys}
        self.read = 0
        self.errors: dict[str, int] = {}
        op = history.invoke(name, "assign", [["assign", dict(self.positions)]])
        history.complete(op, "ok")

    def poll(self, k: str) -> int:
        topic, partition = split_key(k)
        op = self.history.invoke(self.name, "poll", [["poll"]])
        a = self.api.read(topic, partition, self.positions[k], self.isolation, self.max_bytes)
        if a.kind != "ok":
            self.errors[a.error or "?"] = self.errors.get(a.error or "?", 0) + 1
            self.history.complete(op, "fail", [["poll", {}]], error=a.error)
            return -1
        pairs = [[o, v] for o, v in a.body]
        self.history.complete(op, "ok", [["poll", {k: pairs}]])
        self.seen[k].extend((o, v) for o, v in a.body)
        nxt = a.headers.get("X-Dlog-Next-Offset")
        if nxt is not None:
            self.positions[k] = max(self.positions[k], int(nxt))
        elif pairs:
            self.positions[k] = pairs[-1][0] + 1
        self.read += len(pairs)
        return len(pairs)

    def run(self, stop: threading.Event, pause: float = 0.02) -> None:
        while not stop.is_set():
            got = 0
            for k in self.keys:
                if stop.is_set():
                    break
                got += max(0, self.poll(k))
            if not got:
                time.sleep(pause)

    def drain(self, ends: Callable[[str], int | None], timeout: float = 60.0) -> bool:
        """Poll every key until its position reaches ``ends(key)`` (the high watermark, or the
        last stable offset). True if all got there before ``timeout``."""
        deadline = time.monotonic() + timeout
        remaining = set(self.keys)
        while remaining and time.monotonic() < deadline:
            for k in sorted(remaining):
                end = ends(k)
                if end is not None and self.positions[k] >= end:
                    remaining.discard(k)
                    continue
                if self.poll(k) <= 0:
                    time.sleep(0.05)
        return not remaining


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the service may be restarting
            pass
        time.sleep(interval)
    return False


def settled_end(api: Api, k: str, committed: bool = False) -> int | None:
    """The offset a final read must reach for ``k``: the high watermark once it equals the
    log end offset (and, for ``committed``, once the last stable offset reached it too)."""
    topic, partition = split_key(k)
    a = api.partition(topic, partition)
    if a.kind != "ok" or a.body.get("high_watermark") is None:
        return None
    hw, leo, lso = a.body["high_watermark"], a.body["log_end_offset"], a.body["last_stable_offset"]
    if hw != leo or (committed and lso != hw):
        return None
    return hw


# ---------------------------------------------------------------------------- transactions
class TxnProducer:
    """A transactional producer (transactions V2: every commit or abort bumps the epoch, and
    sequences restart at 0). ``init`` is InitProducerId with the transactional id: it fences
    any older instance and aborts (or finishes) its open transaction."""

    def __init__(self, name: str, api: Api, transactional_id: str, *, op_timeout: float = 30.0,
                 transaction_timeout_ms: int = 20000, backoff: float = 0.05) -> None:
        self.name = name
        self.api = api
        self.tid = transactional_id
        self.op_timeout = op_timeout
        self.transaction_timeout_ms = transaction_timeout_ms
        self.backoff = backoff
        self.producer_id: int | None = None
        self.epoch: int | None = None
        self.sequences: dict[tuple[str, int], int] = {}
        self.errors: dict[str, int] = {}
        self.unexpected: list[str] = []

    def _note(self, a: Answer, what: str) -> None:
        self.errors[a.error or "?"] = self.errors.get(a.error or "?", 0) + 1
        if a.error in ("OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_SERVER_ERROR", "INVALID_TXN_STATE"):
            self.unexpected.append(f"{self.name} {what}: {a.status} {a.text[:200]}")

    def _retry(self, call: Callable[[], Answer], what: str, deadline: float | None = None) -> tuple[Answer, bool]:
        """Call until ok, a 4xx, or the deadline; returns the last answer and whether any
        attempt was indefinite."""
        deadline = deadline or time.monotonic() + self.op_timeout
        indefinite = False
        while True:
            a = call()
            if a.kind == "ok":
                return a, indefinite
            self._note(a, what)
            indefinite = indefinite or a.kind == "info"
            if (a.status is not None and a.status < 500) or time.monotonic() >= deadline:
                return a, indefinite
            time.sleep(self.backoff)

    def init(self) -> Answer:
        a, _ = self._retry(lambda: self.api.post(
            f"/v3/clusters/{self.api.cid}/producers", "init-transactional",
            json={"transactional_id": self.tid, "transaction_timeout_ms": self.transaction_timeout_ms}), "init")
        if a.kind == "ok":
            self.producer_id, self.epoch = a.body["producer_id"], a.body["producer_epoch"]
            self.sequences = {}
        return a

    def records(self, topic: str, partition: int, values: list) -> list[dict]:
        seq = self.sequences.get((topic, partition), 0)
        return [record(partition, v, (self.producer_id, self.epoch, seq + i), self.tid) for i, v in enumerate(values)]

    def produce(self, topic: str, partition: int, values: list, retry: bool = True,
                records: list[dict] | None = None) -> tuple[Answer, bool]:
        """A transactional batch to one partition (acks=all); indefinite attempts are retried
        with the same sequences."""
        records = records or self.records(topic, partition, values)
        if retry:
            a, indefinite = self._retry(lambda: self.api.produce(topic, records, "all", 10000), "produce")
        else:
            a = self.api.produce(topic, records, "all", 10000)
            indefinite = a.kind == "info"
            if a.kind != "ok":
                self._note(a, "produce")
        if a.kind == "ok":
            self.sequences[(topic, partition)] = self.sequences.get((topic, partition), 0) + len(values)
        return a, indefinite

    def send_offsets(self, group: str, offsets: list[tuple[str, int, int]], retry: bool = True) -> tuple[Answer, bool]:
        body = {"producer_id": self.producer_id, "producer_epoch": self.epoch, "consumer_group_id": group,
                "offsets": [{"topic_name": t, "partition_id": p, "offset": o} for t, p, o in offsets]}
        call = lambda: self.api.post(f"/v3/clusters/{self.api.cid}/transactions/{self.tid}/offsets",  # noqa: E731
                                     "txn-offsets", json=body)
        if retry:
            return self._retry(call, "offsets")
        a = call()
        if a.kind != "ok":
            self._note(a, "offsets")
        return a, a.kind == "info"

    def end(self, commit: bool, retry: bool = True, epoch: int | None = None,
            deadline: float | None = None) -> tuple[Answer, bool]:
        """EndTxn; on success the producer moves to the epoch the answer gives."""
        body = {"producer_id": self.producer_id, "producer_epoch": self.epoch if epoch is None else epoch}
        path = f"/v3/clusters/{self.api.cid}/transactions/{self.tid}:{'commit' if commit else 'abort'}"
        call = lambda: self.api.post(path, "end-txn", json=body)  # noqa: E731
        if retry:
            a, indefinite = self._retry(call, "end", deadline)
        else:
            a = call()
            indefinite = a.kind == "info"
        if a.kind == "ok" and epoch is None:
            self.epoch = a.body["producer_epoch"]
            self.sequences = {}
        return a, indefinite


def committed_offsets(api: Api, group: str) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets (None if the service did not answer; {} for no group)."""
    a = api.get(f"/v3/clusters/{api.cid}/consumer-groups/{group}/offsets", "group-offsets")
    if a.kind == "ok":
        return {(d["topic_name"], d["partition_id"]): d["offset"] for d in a.body["data"]}
    if a.status == 404:
        return {}
    return None
