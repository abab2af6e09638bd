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

from cli.http import JSON, Client, DlogHTTPError, exit_code_for, key_values, seg, stderr_is_tty, with_client
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


def line_batches(stream: IO[bytes], batch_size: int, linger_s: float) -> Iterator[list[bytes]]:
    """Lines of ``stream`` in batches of up to ``batch_size`` lines (or MAX_BATCH_BYTES).

    A reader thread feeds the lines, so a partial batch is sent once no line has arrived for
    ``linger_s`` (typing into a terminal produces each line promptly) while a file or a fast
    pipe fills whole batches.
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
            item = lines.get(timeout=linger_s if batch else None)
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
              help="Acknowledgements to wait for (default: the server's acks setting).")
@click.option("--timeout-ms", type=click.IntRange(0, 3_600_000), default=None,
              help="How long acks=all may wait for the in-sync replicas (default: the server's).")
@click.option("-f", "--file", "input_file", type=click.File("rb"), default="-", metavar="PATH",
              help="Read lines from this file (default: stdin).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Records per HTTP request.")
@click.option("--linger-ms", type=click.IntRange(0, 60_000), default=100, show_default=True,
              help="Send a partial batch once no line has arrived for this long.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one delivery report per record as JSON on stdout; the summary on stderr is JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No summary and no progress bar.")
@with_client
def produce(client: Client, topic: str, key_separator: str | None, fixed_key: str | None,
            headers: tuple[str, ...], partition: int | None, acks: str | None, timeout_ms: int | None,
            input_file: IO[bytes], batch_size: int, linger_ms: int, as_json: bool, quiet: bool) -> None:
    """Produce one record per line of stdin (or --file) to TOPIC.

    Lines are sent in batches (concatenated JSON to POST /v3/clusters/{cid}/topics/{t}/records);
    keys and values go as STRING when they are UTF-8 and as BINARY otherwise. The summary
    (records, offsets per partition, rate) goes to stderr; a progress bar is shown only when
    stderr is a terminal. The exit status is non-zero if any record failed (see `dlog --help`).

    Example:

    \b
        echo hello | dlog produce orders
        printf 'k1:v1\\nk2:v2\\n' | dlog produce orders -k ':' -H source=cli --acks 1
        dlog produce orders --file records.txt --json > reports.ndjson
    """
    sep = unescape(key_separator) if key_separator is not None else None
    if sep == b"":
        raise click.BadParameter("must not be empty.", param_hint="'-k' / '--key-separator'")
    header_list = [{"name": n, "value": base64.b64encode(v.encode()).decode("ascii")}
                   for n, v in key_values(headers, "'-H' / '--header'")]
    key_field = data_field(fixed_key.encode()) if fixed_key is not None else None
    stream = input_file
    path = client.v3(f"/topics/{seg(topic)}/records")
    params = {"acks": acks, "timeout_ms": timeout_ms}
    client.get(client.v3(f"/topics/{seg(topic)}"))  # an unknown topic fails before any input is read

    def record(line: bytes) -> tuple[bytes, int]:
        if line.endswith(b"\n"):
            line = line[:-1]
        rec: dict[str, Any] = {}
        value = line
        if sep is not None:
            k, found, v = line.partition(sep)
            if found:
                rec["key"], value = data_field(k), v
        if "key" not in rec and key_field is not None:
            rec["key"] = key_field
        rec["value"] = data_field(value)
        if header_list:
            rec["headers"] = header_list
        if partition is not None:
            rec["partition_id"] = partition
        return orjson.dumps(rec), len(line)

    stats = Stats(topic, acks)
    line_no = 0
    stopped_by: DlogHTTPError | None = None
    unsent = 0
    size = input_size(stream)
    if _is_tty(stream) and not quiet:
        click.echo(f"Producing to {topic}: one record per line, Ctrl-D to finish.", err=True)
    show_bar = not quiet and not as_json and stderr_is_tty() and not _is_tty(stream)
    with contextlib.ExitStack() as stack:
        bar = None
        if show_bar:
            label = f"producing to {topic}"
            bar = stack.enter_context(
                click.progressbar(length=size, label=label, file=sys.stderr) if size else
                click.progressbar(iterable=_Unsized(), label=label, file=sys.stderr, show_pos=True, show_eta=False))
        for batch in line_batches(stream, batch_size, linger_ms / 1000.0):
            encoded = [record(line) for line in batch]
            body = b"\n".join(e[0] for e in encoded)
            try:
                resp = client.request("POST", path, params=params, data=body, headers={"Content-Type": JSON})
            except DlogHTTPError as exc:
                stopped_by, unsent = exc, len(batch)
                break
            reports = [orjson.loads(x) for x in resp.content.splitlines() if x.strip()]
            if len(reports) != len(batch):
                raise DlogHTTPError(f"The server answered {len(reports)} delivery reports for {len(batch)} records.")
            lines_out = []
            for report, (_, n) in zip(reports, encoded):
                line_no += 1
                stats.add(report, n)
                if as_json:
                    lines_out.append(_report_line(line_no, report))
            if lines_out:
                click.echo("\n".join(lines_out))
            if bar is not None:
                bar.update(sum(len(line) for line in batch) if size else len(batch))
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
    else:
        doc = {"line": line_no, "error_code": report.get("error_code"), "message": report.get("message"),
               "kafka_error": report.get("kafka_error")}
    return orjson.dumps(doc).decode()


def register(cli: click.Group) -> None:
    cli.add_command(produce)
