"""A v3 produce client that keeps a history of what the service acknowledged.

Used in-process by the e2e tests (one ``Producer`` per thread) and as a stand-alone client
process (``python produce_client.py --url ... --out result.json``) so that several client
processes can append at once. Only the standard library and ``requests``.

Every value is a unique JSON string ``"<prefix>-<n>"``. Each request's outcome is one of:

* ``acked``: 200 with a delivery report for the record; its (partition, offset) is kept;
* ``failed``: a definite error answer (the record was not written);
* ``refused``: the connection was refused, so nothing was sent (the record was not written);
* ``unknown``: no answer (connection reset, timeout) or a 5xx: it may or may not be written.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter

import requests

JSON = "application/json"


class Producer:
    """One logical client: sends requests of 1..``max_batch`` records, one at a time."""

    def __init__(self, url: str, cluster_id: str, topic: str, prefix: str, partitions=(0,), *,
                 acks: str = "1", max_batch: int = 20, single_ratio: float = 0.5, mix_partitions: bool = False,
                 seed: int | None = None, timeout: float = 30.0, fresh_connections: bool = False) -> None:
        self.endpoint = f"{url}/v3/clusters/{cluster_id}/topics/{topic}/records"
        self.prefix = prefix
        self.partitions = list(partitions)
        self.acks = acks
        self.max_batch = max_batch
        self.single_ratio = single_ratio
        self.mix_partitions = mix_partitions
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.headers = {"Content-Type": JSON}
        if fresh_connections:  # a new connection per request: gunicorn's workers share them out
            self.headers["Connection"] = "close"
        self.session = requests.Session()
        self.next_seq = 0
        self.acked: dict[str, tuple[int, int]] = {}  # value -> (partition, offset)
        self.failed: dict[str, dict] = {}  # value -> error report or body
        self.unknown: set[str] = set()
        self.refused: set[str] = set()  # the connection was refused: never sent
        self.statuses: Counter = Counter()
        self.bad_answers: list[str] = []  # 5xx bodies, "database is locked", unparseable answers
        self.requests = 0
        self.latencies: list[float] = []

    def _records(self) -> list[tuple[str, int]]:
        n = 1 if self.rng.random() < self.single_ratio else self.rng.randint(2, self.max_batch)
        first = self.rng.choice(self.partitions)
        out = []
        for _ in range(n):
            value = f"{self.prefix}-{self.next_seq}"
            self.next_seq += 1
            out.append((value, self.rng.choice(self.partitions) if self.mix_partitions else first))
        return out

    def send_one(self) -> str:
        """One produce request; returns ``ok``, ``failed``, ``partial``, ``refused`` or ``unknown``."""
        records = self._records()
        body = "".join(json.dumps({"partition_id": p, "value": {"type": "JSON", "data": v}}) for v, p in records)
        self.requests += 1
        start = time.monotonic()
        try:
            r = self.session.post(self.endpoint, params={"acks": self.acks}, data=body,
                                  headers=self.headers, timeout=self.timeout)
            text = r.text
        except requests.RequestException as exc:
            self.session.close()
            self.session = requests.Session()
            if isinstance(exc, requests.ConnectionError) and "Connection refused" in str(exc):
                # Nothing was sent: definitely not written (the service is down).
                self.statuses["connection-refused"] += 1
                self.refused.update(v for v, _p in records)
                return "refused"
            self.statuses["connection-error"] += 1
            self.unknown.update(v for v, _p in records)
            return "unknown"
        self.latencies.append(time.monotonic() - start)
        self.statuses[r.status_code] += 1
        if r.status_code >= 500 or "database is locked" in text:
            self.bad_answers.append(f"{r.status_code}: {text[:300]}")
        if r.status_code != 200:
            if r.status_code >= 500:
                self.unknown.update(v for v, _p in records)  # indefinite (reliability.md 6.2)
                return "unknown"
            for v, _p in records:
                self.failed[v] = {"status": r.status_code, "body": text[:300]}
            return "failed"
        try:
            reports = [json.loads(line) for line in text.split("\r\n") if line.strip()]
        except ValueError:
            self.bad_answers.append(f"unparseable 200: {text[:300]}")
            self.unknown.update(v for v, _p in records)
            return "unknown"
        if len(reports) != len(records):
            self.bad_answers.append(f"{len(reports)} reports for {len(records)} records: {text[:300]}")
            self.unknown.update(v for v, _p in records)
            return "unknown"
        outcome = "ok"
        for (v, p), report in zip(records, reports):
            if report.get("error_code") == 200:
                if report.get("partition_id") != p:
                    self.bad_answers.append(f"{v} sent to partition {p}, reported {report}")
                self.acked[v] = (report["partition_id"], report["offset"])
            else:
                self.failed[v] = report
                outcome = "partial"
        return outcome

    def run(self, stop: threading.Event | None = None, records: int | None = None, pause_on_error: float = 0.02) -> None:
        """Send until ``stop`` is set or ``records`` values were sent."""
        while (stop is None or not stop.is_set()) and (records is None or self.next_seq < records):
            if self.send_one() in ("unknown", "refused"):
                time.sleep(pause_on_error)

    def history(self) -> dict:
        return {"prefix": self.prefix, "acked": self.acked, "failed": self.failed, "unknown": sorted(self.unknown),
                "refused": sorted(self.refused),
                "statuses": {str(k): v for k, v in self.statuses.items()}, "bad_answers": self.bad_answers,
                "requests": self.requests, "sent": self.next_seq, "latencies": self.latencies}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--cluster-id", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", default="0", help="comma-separated partition ids")
    ap.add_argument("--prefix", required=True, help="value prefix; each thread appends -t<n>")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--records", type=int, default=200, help="records per thread")
    ap.add_argument("--max-batch", type=int, default=20)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh-connections", action="store_true", help="Connection: close on every request")
    ap.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at (a common start line)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    partitions = [int(p) for p in args.partitions.split(",")]
    producers = [Producer(args.url, args.cluster_id, args.topic, f"{args.prefix}-t{i}", partitions,
                          acks=args.acks, max_batch=args.max_batch, seed=args.seed * 1000 + i,
                          fresh_connections=args.fresh_connections and i % 2 == 1)
                 for i in range(args.threads)]
    threads = [threading.Thread(target=p.run, kwargs={"records": args.records}) for p in producers]
    delay = args.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.out, "w") as f:
        json.dump([p.history() for p in producers], f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
