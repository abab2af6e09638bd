"""``dlog produce``: one record per input line, sent in batches through the v3 produce endpoint."""
from __future__ import annotations

import base64
import contextlib
import os
import queue
import stat
import sys
import threading
import time
from typing import IO, Any, Iterator

import click
import orjson

from cli.http import (JSON, Client, DlogHTTPError, exit_code_for, key_values, seg, sigterm_as_interrupt, stderr_is_tty,
                      with_client)
from cli.producer import ProducerSession
from cli.records import data_field, unescape

MAX_BATCH_BYTES = 4 * 1024 * 1024
_EOF = object()


def input_size(stream: IO[bytes]) -> int | None:
    """The byte size of a regular-file input (for the progress bar), None for pipes and terminals."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def line_batches(stream: IO[bytes], batch_size: int, linger_s: float,
                 tick_s: float | None = None) -> Iterator[list[bytes]]:
    """Lines of ``stream`` in batches of up to ``batch_size`` lines (or MAX_BATCH_BYTES).

    A reader thread feeds the lines, so a partial batch is sent once no line has arrived for
    ``linger_s`` (typing into a terminal produces each line promptly) while a file or a fast
    pipe fills whole batches. With ``tick_s``, an empty batch is yielded whenever no line has
    arrived for that long (so a caller can commit on time while the input is idle).
    """
    lines: queue.Queue = queue.Queue(maxsize=batch_size * 4)

    def read() -> None:
        try:
            for line in stream:
                lines.put(line)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            lines.put(exc)
        finally:
            lines.put(_EOF)

    threading.Thread(target=read, name="dlog-produce-reader", daemon=True).start()
    batch: list[bytes] = []
    size = 0
    while True:
        try:
            item = lines.get(timeout=linger_s if batch else tick_s)
        except queue.Empty:
            yield batch
            batch, size = [], 0
            continue
        if item is _EOF:
            break
        if isinstance(item, BaseException):
            raise item
        batch.append(item)
        size += len(item)
        if len(batch) >= batch_size or size >= MAX_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class Stats:
    """What has been produced so far, for the summary."""

    def __init__(self, topic: str, acks: str | None) -> None:
        self.topic = topic
        self.acks = acks
        self.started = time.monotonic()
        self.records = 0
        self.bytes = 0
        self.failed = 0
        self.first_failure: dict | None = None
        self.partitions: dict[int, list[int]] = {}  # partition -> [first offset, last offset, count]
        self.session: ProducerSession | None = None
        self.aborted = 0  # records of a transaction aborted when the run stopped

    def add(self, report: dict, size: int) -> None:
        if report.get("error_code", 200) != 200:
            self.failed += 1
            self.first_failure = self.first_failure or report
            return
        self.records += 1
        self.bytes += size
        p, o = report["partition_id"], report["offset"]
        entry = self.partitions.get(p)
        if entry is None:
            self.partitions[p] = [o, o, 1]
        else:
            entry[0], entry[1], entry[2] = min(entry[0], o), max(entry[1], o), entry[2] + 1

    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def as_json(self, stopped_by: DlogHTTPError | None, unsent: int) -> dict:
        seconds = self.seconds()
        doc: dict[str, Any] = {
            "topic": self.topic, "records": self.records, "failed": self.failed, "bytes": self.bytes,
            "seconds": round(seconds, 3), "records_per_second": round(self.records / seconds, 1),
            "partitions": {str(p): {"first_offset": f, "last_offset": last, "records": n}
                           for p, (f, last, n) in sorted(self.partitions.items())},
        }
        if self.first_failure:
            doc["first_error"] = {k: self.first_failure.get(k) for k in ("error_code", "message", "kafka_error")}
        if stopped_by is not None:
            doc["stopped_by"] = {"message": stopped_by.message, "kafka_error": stopped_by.kafka_error,
                                 "status": stopped_by.status, "records_in_failed_request": unsent}
        s = self.session
        if s is not None:
            doc["producer"] = {"producer_id": s.producer_id, "producer_epoch": s.producer_epoch,
                               "transactional_id": s.transactional_id, "retries": s.retries,
                               "duplicates": s.duplicates}
            if s.transactional:
                doc["producer"].update(commits=s.commits, aborted_records=self.aborted)
        return doc

    def text(self, stopped_by: DlogHTTPError | None, unsent: int) -> str:
        seconds = self.seconds()
        rate = f"{self.records / seconds:.0f} records/s, {self.bytes / seconds / 1e6:.2f} MB/s"
        lines = [f"produced {self.records} records ({_size(self.bytes)}) to {self.topic} in {seconds:.2f}s "
                 f"({rate})"]
        for p, (first, last, n) in sorted(self.partitions.items()):
            if first < 0:
                lines.append(f"  partition {p}: {n} records, offsets unknown (acks=0)")
            else:
                lines.append(f"  partition {p}: {n} records, offsets {first}..{last}")
        if self.failed:
            f = self.first_failure or {}
            lines.append(f"  {self.failed} records failed; first: {f.get('message')} ({f.get('kafka_error')})")
        if stopped_by is not None:
            fate = ("may or may not have been written (outcome unknown)" if stopped_by.exit_code == 5
                    else "were not written")
            lines.append(f"  stopped: a request failed; its {unsent} records {fate}")
        s = self.session
        if s is not None:
            kind = f"transactional id {s.transactional_id}" if s.transactional else "idempotent"
            lines.append(f"  {kind}: producer {s.producer_id} epoch {s.producer_epoch}; {s.retries} retries, "
                         f"{s.duplicates} records answered as duplicates of an earlier attempt")
            if s.transactional:
                lines.append(f"  {s.commits} transactions committed"
                             + (f"; the open one was aborted ({self.aborted} records discarded)" if self.aborted
                                else ""))
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@click.command("produce")
@click.argument("topic")
@click.option("-k", "--key-separator", "key_separator", metavar="SEP",
              help=r"Split each line at the first SEP into key and value (e.g. ':' or '\t'); "
                   "a line without SEP has no key.")
@click.option("--key", "fixed_key", metavar="KEY", help="Use KEY as the key of every record without a parsed key.")
@click.option("-H", "--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="Add a header to every record; repeatable.")
@click.option("-p", "--partition", type=click.IntRange(0), default=None,
              help="Send every record to this partition (default: by key, else spread).")
@click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), default=None,
              help="Acknowledgements to wait for (default: the server's acks setting; all when idempotent).")
@click.option("--timeout-ms", type=click.IntRange(0, 3_600_000), default=None,
              help="How long acks=all may wait for the in-sync replicas (default: the server's).")
@click.option("-f", "--file", "input_file", type=click.File("rb"), default="-", metavar="PATH",
              help="Read lines from this file (default: stdin).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Records per HTTP request.")
@click.option("--linger-ms", type=click.IntRange(0, 60_000), default=100, show_default=True,
              help="Send a partial batch once no line has arrived for this long.")
@click.option("--idempotent", is_flag=True,
              help="Idempotent producer: a producer id and per-partition sequences; failed requests are "
                   "retried unchanged, so a retry never writes a record twice.")
@click.option("--transactional-id", metavar="ID", default=None,
              help="Transactional producer (implies --idempotent): records are written in transactions of "
                   "this id, visible to read_committed readers once committed.")
@click.option("--commit-every", type=click.IntRange(1), default=None, metavar="N",
              help="With --transactional-id: commit after every N records.")
@click.option("--commit-interval-ms", type=click.IntRange(1), default=None, metavar="T",
              help="With --transactional-id: commit a transaction once it is T ms old (also while input is idle).")
@click.option("--transaction-timeout-ms", type=click.IntRange(1), default=None, metavar="MS",
              help="The transaction timeout (default: the server's); an older open transaction is aborted.")
@click.option("--delivery-timeout-ms", type=click.IntRange(0), default=120_000, show_default=True, metavar="MS",
              help="With --idempotent: how long a failing request is retried before giving up.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one delivery report per record as JSON on stdout; the summary on stderr is JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No summary and no progress bar.")
@with_client
def produce(client: Client, topic: str, key_separator: str | None, fixed_key: str | None,
            headers: tuple[str, ...], partition: int | None, acks: str | None, timeout_ms: int | None,
            input_file: IO[bytes], batch_size: int, linger_ms: int, idempotent: bool, transactional_id: str | None,
            commit_every: int | None, commit_interval_ms: int | None, transaction_timeout_ms: int | None,
            delivery_timeout_ms: int, as_json: bool, quiet: bool) -> None:
    """Produce one record per line of stdin (or --file) to TOPIC.

    Lines are sent in batches (concatenated JSON to POST /v3/clusters/{cid}/topics/{t}/records);
    keys and values go as STRING when they are UTF-8 and as BINARY otherwise. The summary
    (records, offsets per partition, rate) goes to stderr; a progress bar is shown only when
    stderr is a terminal. The exit status is non-zero if any record failed (see `dlog --help`).

    --idempotent gets a producer id (POST /v3/clusters/{cid}/producers), routes each record
    to its partition here (-p, else murmur2 of the key as Kafka does, else one partition per
    batch) and numbers it with the partition's sequence. A request that gets no answer or a
    5xx is sent again with the same sequences until it succeeds (or --delivery-timeout-ms);
    dlog answers a repeated batch with its original offsets, so nothing is written twice.

    --transactional-id ID also wraps the records in transactions: committed after every
    --commit-every N records, when a transaction is --commit-interval-ms T old, and at the end
    of the input (with neither option, all the input is one transaction). On an error or
    Ctrl-C the open transaction is aborted. Read them with `dlog consume --isolation
    read_committed`.

    Example:

    \b
        echo hello | dlog produce orders
        printf 'k1:v1\\nk2:v2\\n' | dlog produce orders -k ':' -H source=cli --acks 1
        dlog produce orders --file records.txt --json > reports.ndjson
        dlog produce orders --idempotent -k ':' < keyed.txt
        dlog produce orders --transactional-id loader-1 --commit-every 1000 < big.txt
    """
    sep = unescape(key_separator) if key_separator is not None else None
    if sep == b"":
        raise click.BadParameter("must not be empty.", param_hint="'-k' / '--key-separator'")
    if (commit_every or commit_interval_ms or transaction_timeout_ms) and transactional_id is None:
        raise click.UsageError("--commit-every, --commit-interval-ms and --transaction-timeout-ms need "
                               "--transactional-id.")
    if transactional_id is not None:
        idempotent = True
        if not transactional_id:
            raise click.BadParameter("must not be empty.", param_hint="'--transactional-id'")
    if idempotent:
        if acks in ("0", "1"):
            raise click.UsageError(f"--acks {acks} cannot be idempotent: an idempotent or transactional producer "
                                   "needs acks=all (as Kafka's enable.idempotence).")
        acks = "all"
    header_list = [{"name": n, "value": base64.b64encode(v.encode()).decode("ascii")}
                   for n, v in key_values(headers, "'-H' / '--header'")]
    key_field = data_field(fixed_key.encode()) if fixed_key is not None else None
    fixed_raw_key = fixed_key.encode() if fixed_key is not None else None
    stream = input_file
    path = client.v3(f"/topics/{seg(topic)}/records")
    params = {"acks": acks, "timeout_ms": timeout_ms}
    described = client.get(client.v3(f"/topics/{seg(topic)}"))  # an unknown topic fails before any input is read

    def record(line: bytes) -> tuple[dict, bytes | None, int]:
        if line.endswith(b"\n"):
            line = line[:-1]
        rec: dict[str, Any] = {}
        value = line
        raw_key = None
        if sep is not None:
            k, found, v = line.partition(sep)
            if found:
                rec["key"], value, raw_key = data_field(k), v, k
        if "key" not in rec and key_field is not None:
            rec["key"], raw_key = key_field, fixed_raw_key
        rec["value"] = data_field(value)
        if header_list:
            rec["headers"] = header_list
        if partition is not None:
            rec["partition_id"] = partition
        return rec, raw_key, len(line)

    stats = Stats(topic, acks)
    session: ProducerSession | None = None
    if idempotent:
        count = described.get("partitions_count") or 1
        if partition is not None and partition >= count:
            raise DlogHTTPError(f"Partition {partition} of topic {topic!r} not found (it has {count}).", 404, 40402,
                                "UNKNOWN_TOPIC_OR_PARTITION")
        session = ProducerSession(client, topic, count, partition, transactional_id=transactional_id,
                                  transaction_timeout_ms=transaction_timeout_ms,
                                  delivery_timeout_ms=delivery_timeout_ms, params=params,
                                  on_retry=None if quiet else lambda why: click.echo(f"retrying: {why}", err=True))
        session.init()
        stats.session = session

    def send(encoded: list[tuple[dict, bytes | None, int]]) -> list[dict]:
        if session is not None:
            return session.send([(rec, key) for rec, key, _ in encoded])
        body = b"\n".join(orjson.dumps(e[0]) for e in encoded)
        resp = client.request("POST", path, params=params, data=body, headers={"Content-Type": JSON})
        return [orjson.loads(x) for x in resp.content.splitlines() if x.strip()]

    def commit_due() -> bool:
        if session is None or not session.transactional or not session.in_transaction:
            return False
        if commit_every is not None and session.txn_records >= commit_every:
            return True
        return (commit_interval_ms is not None and session.txn_started is not None
                and (time.monotonic() - session.txn_started) * 1000 >= commit_interval_ms)

    def chunks(batch: list[bytes]) -> Iterator[list[bytes]]:
        """A batch cut where --commit-every ends a transaction."""
        if not batch:
            return  # an idle tick: nothing to send
        if commit_every is None or session is None:
            yield batch
            return
        i = 0
        while i < len(batch):
            room = commit_every - session.txn_records
            yield batch[i:i + room]
            i += room

    line_no = 0
    stopped_by: DlogHTTPError | None = None
    unsent = 0
    size = input_size(stream)
    if _is_tty(stream) and not quiet:
        click.echo(f"Producing to {topic}: one record per line, Ctrl-D to finish.", err=True)
    show_bar = not quiet and not as_json and stderr_is_tty() and not _is_tty(stream)
    tick_s = min(commit_interval_ms / 1000.0, 1.0) if commit_interval_ms and transactional_id else None
    try:
        with contextlib.ExitStack() as stack:
            if transactional_id is not None:
                stack.enter_context(sigterm_as_interrupt())  # kill aborts the open transaction too
            bar = None
            if show_bar:
                label = f"producing to {topic}"
                bar = stack.enter_context(
                    click.progressbar(length=size, label=label, file=sys.stderr) if size else
                    click.progressbar(iterable=_Unsized(), label=label, file=sys.stderr, show_pos=True,
                                      show_eta=False))
            for batch in line_batches(stream, batch_size, linger_ms / 1000.0, tick_s):
                for chunk in chunks(batch):
                    encoded = [record(line) for line in chunk]
                    try:
                        reports = send(encoded)
                    except DlogHTTPError as exc:
                        stopped_by, unsent = exc, len(chunk)
                        break
                    if len(reports) != len(chunk):
                        raise DlogHTTPError(f"The server answered {len(reports)} delivery reports for "
                                            f"{len(chunk)} records.")
                    lines_out = []
                    for report, (_, _, n) in zip(reports, encoded):
                        line_no += 1
                        stats.add(report, n)
                        if as_json:
                            lines_out.append(_report_line(line_no, report))
                    if lines_out:
                        click.echo("\n".join(lines_out))
                    if session is not None and session.transactional and stats.failed:
                        f = stats.first_failure or {}
                        stopped_by = DlogHTTPError(f"A record of the transaction failed: {f.get('message')}", 0,
                                                   f.get("error_code"), f.get("kafka_error"),
                                                   exit_code=exit_code_for(f.get("error_code") or 500))
                        break
                    if commit_due():
                        session.commit()
                if stopped_by is not None:
                    break
                if commit_due():  # --commit-interval-ms while the input is idle
                    session.commit()
                if bar is not None and batch:
                    bar.update(sum(len(line) for line in batch) if size else len(batch))
            if stopped_by is None and session is not None and session.transactional:
                session.commit()  # the end of the input ends the last transaction
    except DlogHTTPError as exc:  # a commit that failed for good
        stopped_by = stopped_by or exc
    except BaseException:  # Ctrl-C: abort the open transaction, as a closing producer does
        _abort_quietly(session, stats)
        raise
    if stopped_by is not None:
        _abort_quietly(session, stats)
    if not quiet:
        summary = stats.as_json(stopped_by, unsent) if as_json else stats.text(stopped_by, unsent)
        click.echo(orjson.dumps(summary).decode() if as_json else summary, err=True)
    if stopped_by is not None:
        raise stopped_by
    if stats.failed:
        f = stats.first_failure or {}
        raise DlogHTTPError(f"{stats.failed} of {stats.failed + stats.records} records failed; first: "
                            f"{f.get('message')}", 0, f.get("error_code"), f.get("kafka_error"),
                            exit_code=exit_code_for(f.get("error_code") or 500))


def _abort_quietly(session: ProducerSession | None, stats: Stats) -> None:
    """Abort the open transaction, if any; an error here changes nothing (the transaction
    then times out on the server)."""
    if session is None or not session.transactional or not session.in_transaction:
        return
    pending = session.txn_records
    try:
        session.delivery_timeout_s = min(session.delivery_timeout_s, 10.0)
        session.abort()
        stats.aborted = pending
    except DlogHTTPError as exc:
        click.echo(f"warning: could not abort transaction {session.transactional_id}: {exc.format_message()}; "
                   "it will be aborted when it times out", err=True)


class _Unsized:
    """An iterable without a length: the progress bar then counts instead of measuring."""

    def __iter__(self) -> Iterator[None]:
        return iter(())


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _report_line(line_no: int, report: dict) -> str:
    if report.get("error_code", 200) == 200:
        doc = {"line": line_no, "partition": report.get("partition_id"), "offset": report.get("offset"),
               "timestamp": report.get("timestamp")}
        if report.get("duplicate"):
            doc["duplicate"] = True
    else:
        doc = {"line": line_no, "error_code": report.get("error_code"), "message": report.get("message"),
               "kafka_error": report.get("kafka_error")}
    return orjson.dumps(doc).decode()


def register(cli: click.Group) -> None:
    cli.add_command(produce)
