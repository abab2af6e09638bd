"""``dlog bench``: a small load generator over HTTP: produce, then read back, and report rates
and request latencies. It measures dlog end to end as a client sees it (HTTP, JSON, base64),
not the storage engine alone."""
from __future__ import annotations

import base64
import math
import os
import threading
import time
import uuid
from typing import Any

import click
import orjson

from cli import output
from cli.consume import PartitionReader
from cli.http import JSON, Client, DlogHTTPError, seg, with_client


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _body(count: int, size: int) -> bytes:
    """``count`` records of ``size`` random bytes each (BINARY), concatenated v3 JSON."""
    return b"\n".join(orjson.dumps({"value": {"type": "BINARY", "data": base64.b64encode(os.urandom(size)).decode()}})
                      for _ in range(count))


class _Producer(threading.Thread):
    """One client: takes batch numbers from the shared counter until none are left."""

    def __init__(self, client: Client, path: str, params: dict, plan: "_Plan") -> None:
        super().__init__(name="dlog-bench-producer", daemon=True)
        self.client = client.clone()
        self.path = path
        self.params = params
        self.plan = plan
        self.latencies: list[float] = []
        self.records = 0
        self.failed = 0
        self.first_error: str | None = None

    def run(self) -> None:
        bodies: dict[int, bytes] = {}
        try:
            while True:
                count = self.plan.take()
                if count == 0:
                    return
                body = bodies.get(count)
                if body is None:
                    body = bodies[count] = _body(count, self.plan.record_size)
                began = time.perf_counter()
                try:
                    resp = self.client.request("POST", self.path, params=self.params, data=body,
                                               headers={"Content-Type": JSON})
                except DlogHTTPError as exc:
                    self.latencies.append(time.perf_counter() - began)
                    self.failed += count
                    self.first_error = self.first_error or exc.format_message()
                    continue
                self.latencies.append(time.perf_counter() - began)
                for line in resp.content.splitlines():
                    if not line.strip():
                        continue
                    report = orjson.loads(line)
                    if report.get("error_code", 200) == 200:
                        self.records += 1
                    else:
                        self.failed += 1
                        self.first_error = self.first_error or f"{report.get('message')} ({report.get('kafka_error')})"
        finally:
            self.client.close()


class _Plan:
    """N records cut into batches of B, handed out to the clients one batch at a time."""

    def __init__(self, records: int, batch_size: int, record_size: int) -> None:
        self.left = records
        self.batch_size = batch_size
        self.record_size = record_size
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            count = min(self.batch_size, self.left)
            self.left -= count
            return count


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


@click.command("bench", short_help="Load generator: produce, read back, report records/s and latency.")
@click.argument("topic", required=False)
@click.option("-n", "--records", type=click.IntRange(1), default=10_000, show_default=True,
              help="Records to produce.")
@click.option("-s", "--record-size", type=click.IntRange(0, 8 * 1024 * 1024), default=100, show_default=True,
              help="Value size in bytes (random bytes, sent base64 as BINARY; no key).")
@click.option("-c", "--clients", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Concurrent HTTP clients (threads), each with one request in flight.")
@click.option("-b", "--batch-size", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="Records per produce request.")
@click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), default=None,
              help="Acknowledgements to wait for (default: the server's).")
@click.option("-p", "--partitions", type=click.IntRange(1), default=3, show_default=True,
              help="Partitions of the topic created when TOPIC is not given.")
@click.option("-r", "--replicas", type=click.IntRange(1), default=None,
              help="Replication factor of the created topic (default: the server's).")
@click.option("--no-read", is_flag=True, help="Skip the read-back phase.")
@click.option("--keep", is_flag=True, help="Keep the created topic (default: delete it at the end).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@with_client
def bench(client: Client, topic: str | None, records: int, record_size: int, clients: int, batch_size: int,
          acks: str | None, partitions: int, replicas: int | None, no_read: bool, keep: bool, as_json: bool) -> None:
    """Produce N records of S bytes with C concurrent clients in batches of B, then read them
    back, and print records/s, MB/s and the p50/p99/max latency of the produce requests.

    Without TOPIC a topic dlog-bench-<random> is created (-p, -r) and deleted afterwards
    (unless --keep). The produce phase posts v3 records with no key (dlog spreads each
    request's records over the partitions); latency is per request, from sending it to the
    last delivery report, so it includes HTTP and JSON work on both sides. The read phase
    reads the produced offset range of every partition with the stateless read (one client
    per partition, up to C) and checks the count. Exit status 1 when a record failed or the
    read-back found a different number of records.

    Example:

    \b
        dlog bench
        dlog bench -n 100000 -s 1024 -c 8 -b 500 --acks all
        dlog bench orders -n 5000 --no-read --json
    """
    created = None
    if topic is None:
        topic = created = f"dlog-bench-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {"topic_name": topic, "partitions_count": partitions}
        if replicas is not None:
            body["replication_factor"] = replicas
        client.post(client.v3("/topics"), body)
    try:
        result = _run(client, topic, records, record_size, clients, batch_size, acks, no_read)
    finally:
        if created and not keep:
            try:
                client.delete(client.v3(f"/topics/{seg(created)}"))
            except DlogHTTPError as exc:
                click.echo(f"warning: could not delete {created}: {exc.format_message()}", err=True)
    if as_json:
        output.print_json(result)
    else:
        _print(result)
    problems = []
    if result["produce"]["failed"]:
        problems.append(f"{result['produce']['failed']} records failed: {result['produce']['first_error']}")
    read = result.get("read")
    if read is not None and read["records"] != result["produce"]["records"]:
        problems.append(f"read back {read['records']} records, produced {result['produce']['records']}")
    if problems:
        raise DlogHTTPError("; ".join(problems), exit_code=1)


def _partitions(client: Client, topic: str) -> dict[int, dict]:
    return {p["partition_id"]: p for p in client.get(client.v3(f"/topics/{seg(topic)}/partitions"))["data"]}


def _run(client: Client, topic: str, records: int, record_size: int, clients: int, batch_size: int,
         acks: str | None, no_read: bool) -> dict:
    before = {pid: p["high_watermark"] for pid, p in _partitions(client, topic).items()}
    plan = _Plan(records, batch_size, record_size)
    path = client.v3(f"/topics/{seg(topic)}/records")
    workers = [_Producer(client, path, {"acks": acks}, plan) for _ in range(clients)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = max(time.perf_counter() - began, 1e-9)
    latencies = sorted(x for w in workers for x in w.latencies)
    produced = sum(w.records for w in workers)
    failed = sum(w.failed for w in workers)
    result: dict[str, Any] = {
        "topic": topic, "url": client.url,
        "produce": {
            "records": produced, "failed": failed, "record_size": record_size, "batch_size": batch_size,
            "clients": clients, "acks": acks or "server default", "requests": len(latencies),
            "seconds": round(seconds, 3), "records_per_second": round(produced / seconds, 1),
            "mb_per_second": round(produced * record_size / seconds / 1e6, 3),
            "latency_ms": {"p50": _ms(percentile(latencies, 50)), "p99": _ms(percentile(latencies, 99)),
                           "max": _ms(latencies[-1] if latencies else None)},
            "first_error": next((w.first_error for w in workers if w.first_error), None),
        },
    }
    if not no_read:
        result["read"] = _read_back(client, topic, before, clients, produced)
    return result


def _wait_for_high_watermarks(client: Client, topic: str, before: dict[int, int], expected: int) -> dict[int, dict]:
    """The partitions once their high watermarks cover ``expected`` new records (acks=0 and 1
    answer before the high watermark moves), or once they stop moving for 3 s (30 s at most)."""
    started = last_move = time.monotonic()
    seen = -1
    while True:
        after = _partitions(client, topic)
        total = sum((p["high_watermark"] or 0) - before.get(pid, 0) for pid, p in after.items())
        now = time.monotonic()
        if total >= expected or now - last_move > 3.0 or now - started > 30.0:
            return after
        if total != seen:
            seen, last_move = total, now
        time.sleep(0.05)


def _read_back(client: Client, topic: str, before: dict[int, int], clients: int, expected: int) -> dict:
    waited = time.perf_counter()
    after = _wait_for_high_watermarks(client, topic, before, expected)
    waited = time.perf_counter() - waited
    readers = [PartitionReader(client, topic, pid, before.get(pid, 0), p["high_watermark"], "read_uncommitted",
                               4 * 1024 * 1024) for pid, p in sorted(after.items())]
    counts = {"records": 0, "bytes": 0, "requests": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []
    pending = list(readers)

    def work() -> None:
        own = client.clone()
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    reader = pending.pop()
                reader.client = own
                while not reader.done:
                    start = reader.offset
                    got = reader.poll(0)
                    with lock:
                        counts["records"] += len(got)
                        counts["bytes"] += sum(len(r.value or b"") for r in got)
                        counts["requests"] += 1
                    if reader.offset == start:
                        break  # the log ended below the stop (truncated): nothing more
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            own.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=work, name="dlog-bench-reader", daemon=True)
               for _ in range(min(clients, len(readers)) or 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    seconds = max(time.perf_counter() - began, 1e-9)
    return {"records": counts["records"], "requests": counts["requests"], "seconds": round(seconds, 3),
            "high_watermark_wait_seconds": round(waited, 3),
            "records_per_second": round(counts["records"] / seconds, 1),
            "mb_per_second": round(counts["bytes"] / seconds / 1e6, 3)}


def _print(r: dict) -> None:
    p = r["produce"]
    lat = p["latency_ms"]
    click.echo(f"topic {r['topic']} at {r['url']}")
    click.echo(f"produce: {p['records']} records of {p['record_size']} B, {p['requests']} requests of up to "
               f"{p['batch_size']}, {p['clients']} clients, acks={p['acks']}")
    click.echo(f"  {p['seconds']:.2f} s  {p['records_per_second']:.0f} records/s  {p['mb_per_second']:.2f} MB/s")
    click.echo(f"  request latency ms  p50 {lat['p50']}  p99 {lat['p99']}  max {lat['max']}")
    if p["acks"] == "0":
        click.echo("  (acks=0: the server answers before writing; these rates count records accepted, not written)")
    if p["failed"]:
        click.echo(f"  failed: {p['failed']} records; first: {p['first_error']}")
    read = r.get("read")
    if read is not None:
        waited = read["high_watermark_wait_seconds"]
        click.echo(f"read back: {read['records']} records in {read['requests']} requests"
                   + (f" (after waiting {waited:.2f} s for the high watermarks)" if waited >= 0.1 else ""))
        click.echo(f"  {read['seconds']:.2f} s  {read['records_per_second']:.0f} records/s  "
                   f"{read['mb_per_second']:.2f} MB/s")


def register(cli: click.Group) -> None:
    cli.add_command(bench)
