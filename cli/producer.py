"""An idempotent (optionally transactional) producer over dlog's v3 API, for ``dlog produce
--idempotent`` and ``--transactional-id``.

* ``POST /v3/clusters/{cid}/producers`` gives the producer id and epoch (with a
  ``transactional_id``: that id's producer, its epoch bumped, older instances fenced).
* Each record names its partition (see ``cli.partitioner``) and carries ``producer_id``,
  ``producer_epoch`` and ``sequence``: per partition, consecutive, from 0 in each epoch.
* A request that fails with a transport error, a timeout or a 5xx (or whose reports hold a
  retriable error) is sent again *unchanged*, the same sequences, until it succeeds or
  ``delivery_timeout_ms`` passes. dlog answers a retry of one of a partition's last five
  batches with the original offsets and ``"duplicate": true``, so a retry never writes twice.
  One request is in flight at a time, so a retry is always of the latest batch.
* Transactional: records also carry ``transactional_id``; ``commit()`` posts
  ``.../transactions/{tid}:commit``, whose answer holds the next epoch (every commit or abort
  bumps it) and the sequences start again at 0.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import orjson

from cli.http import EXIT_TIMEOUT, EXIT_UNAVAILABLE, JSON, Client, DlogHTTPError, seg
from cli.partitioner import StickyPartitioner

# Errors after which no later batch of this producer can succeed: stop at once.
FATAL_ERRORS = frozenset({
    "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH", "OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID",
    "INVALID_PRODUCER_ID_MAPPING", "INVALID_TXN_STATE", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "TRANSACTION_COORDINATOR_FENCED", "INVALID_TRANSACTION_TIMEOUT",
})
BACKOFF_S = (0.1, 0.2, 0.5, 1.0)


def retriable(exc: DlogHTTPError) -> bool:
    """No answer (refused, reset, timed out) or a 5xx: the same request may be sent again."""
    if exc.status == 0:
        return exc.exit_code in (EXIT_UNAVAILABLE, EXIT_TIMEOUT)
    return exc.status >= 500


def report_retriable(report: dict) -> bool:
    code = report.get("error_code", 200)
    if code == 200:
        return False
    return (code // 100 if code >= 1000 else code) >= 500


class ProducerSession:
    """One idempotent or transactional producer writing to one topic.

    :param on_retry: called with the error before each retry (for a note on stderr).
    """

    def __init__(self, client: Client, topic: str, partitions: int, explicit_partition: int | None = None, *,
                 transactional_id: str | None = None, transaction_timeout_ms: int | None = None,
                 delivery_timeout_ms: int = 120_000, params: dict | None = None,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.topic = topic
        self.path = client.v3(f"/topics/{seg(topic)}/records")
        self.partitioner = StickyPartitioner(partitions, explicit_partition)
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.delivery_timeout_s = delivery_timeout_ms / 1000.0
        self.params = params or {}
        self.on_retry = on_retry
        self.producer_id = -1
        self.producer_epoch = -1
        self.sequences: dict[int, int] = {}
        self.retries = 0
        self.duplicates = 0
        self.commits = 0
        self.aborts = 0
        self.txn_records = 0          # records written in the open transaction
        self.txn_started: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def init(self) -> None:
        """InitProducerId: a new producer id, or the transactional id's producer with its epoch bumped."""
        body: dict[str, Any] = {}
        if self.transactional_id is not None:
            body["transactional_id"] = self.transactional_id
            if self.transaction_timeout_ms is not None:
                body["transaction_timeout_ms"] = self.transaction_timeout_ms
        answer = self._retrying(lambda: self.client.post(self.client.v3("/producers"), body), "init producer")
        self.producer_id, self.producer_epoch = answer["producer_id"], answer["producer_epoch"]
        self.sequences = {}

    @property
    def transactional(self) -> bool:
        return self.transactional_id is not None

    @property
    def in_transaction(self) -> bool:
        return self.txn_records > 0

    def commit(self) -> dict | None:
        """Commit the open transaction (nothing to do when it holds no record)."""
        return self._end("commit") if self.in_transaction else None

    def abort(self) -> dict | None:
        return self._end("abort") if self.in_transaction else None

    def _end(self, verb: str) -> dict:
        path = self.client.v3(f"/transactions/{seg(self.transactional_id or '')}:{verb}")
        body = {"producer_id": self.producer_id, "producer_epoch": self.producer_epoch}
        # A retry of a commit that took effect is answered as the commit was (same epoch).
        answer = self._retrying(lambda: self.client.post(path, body), verb)
        self.producer_id = answer.get("producer_id", self.producer_id)
        self.producer_epoch = answer["producer_epoch"]
        self.sequences = {}
        self.txn_records = 0
        self.txn_started = None
        if verb == "commit":
            self.commits += 1
        else:
            self.aborts += 1
        return answer

    # ------------------------------------------------------------------ produce
    def build(self, records: list[tuple[dict, bytes | None]]) -> tuple[bytes, list[int]]:
        """The request body for ``records`` ((v3 record, raw key) pairs): partitions and
        sequences assigned; nothing is counted as sent yet. Returns the body and the partitions."""
        self.partitioner.next_batch()
        next_seq = dict(self.sequences)
        parts, lines = [], []
        for rec, key in records:
            p = self.partitioner.partition(key)
            seq = next_seq.get(p, 0)
            next_seq[p] = seq + 1
            rec = dict(rec, partition_id=p, producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                       sequence=seq)
            if self.transactional_id is not None:
                rec["transactional_id"] = self.transactional_id
            parts.append(p)
            lines.append(orjson.dumps(rec))
        return b"\n".join(lines), parts

    def post(self, body: bytes, parts: list[int]) -> list[dict]:
        """Send ``body`` (from ``build``) until every record is written or fails for good;
        then advance the sequences of the partitions whose batch was written.

        :raises DlogHTTPError: a non-retriable answer, a fatal record error, or retries for
            longer than the delivery timeout.
        """
        began = time.monotonic()
        deadline = began + self.delivery_timeout_s
        attempt = 0
        while True:
            try:
                resp = self.client.request("POST", self.path, params=self.params, data=body,
                                           headers={"Content-Type": JSON})
            except DlogHTTPError as exc:
                if not retriable(exc) or time.monotonic() >= deadline:
                    raise
                self._backoff(attempt, exc.format_message())
                attempt += 1
                continue
            reports = [orjson.loads(x) for x in resp.content.splitlines() if x.strip()]
            if len(reports) != len(parts):
                raise DlogHTTPError(f"The server answered {len(reports)} delivery reports for {len(parts)} records.")
            again = next((r for r in reports if report_retriable(r)), None)
            if again is None:
                break
            if time.monotonic() >= deadline:
                # Give up: the batch may or may not have been written (a timeout), so its
                # sequences cannot be reused for other records; stop here.
                raise DlogHTTPError(f"Gave up after {self.delivery_timeout_s:g}s of retries: "
                                    f"{again.get('message')}", 0, again.get("error_code"), again.get("kafka_error"))
            self._backoff(attempt, f"{again.get('message')} ({again.get('kafka_error')})")
            attempt += 1
        written: dict[int, int] = {}
        failed: set[int] = set()
        for p, report in zip(parts, reports):
            if report.get("error_code", 200) == 200:
                written[p] = written.get(p, 0) + 1
                if report.get("duplicate"):
                    self.duplicates += 1
            else:
                failed.add(p)
                if report.get("kafka_error") in FATAL_ERRORS:
                    raise DlogHTTPError(str(report.get("message")), 0, report.get("error_code"),
                                        report.get("kafka_error"))
        for p, n in written.items():
            if p not in failed:  # a partition's batch is written whole or not at all
                self.sequences[p] = self.sequences.get(p, 0) + n
        if written and self.transactional:
            self.txn_records += sum(written.values())
            if self.txn_started is None:
                self.txn_started = began  # the transaction began with its first request
        return reports

    def send(self, records: list[tuple[dict, bytes | None]]) -> list[dict]:
        body, parts = self.build(records)
        return self.post(body, parts)

    # ------------------------------------------------------------------ retries
    def _retrying(self, call: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.delivery_timeout_s
        attempt = 0
        while True:
            try:
                return call()
            except DlogHTTPError as exc:
                if not retriable(exc) or time.monotonic() >= deadline:
                    raise
                self._backoff(attempt, f"{what}: {exc.format_message()}")
                attempt += 1

    def _backoff(self, attempt: int, reason: str) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(reason)
        time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
