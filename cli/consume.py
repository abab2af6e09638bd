"""``dlog consume``: read partitions with the stateless read
``GET /topics/{t}/partitions/{p}/records`` and print each record (format string or JSON)."""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Callable

import click

from cli.http import V2_BINARY, Client, DlogHTTPError, seg, with_client
from cli.records import Consumed, OffsetSpec, compile_format, json_line, parse_offset_range, render

HTTP_SLACK_S = 30.0


def parse_partitions(values: tuple[str, ...]) -> list[int] | None:
    """``-p 0,2 -p 5`` as ``[0, 2, 5]``; None when no partition was given (all of them)."""
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part.isdigit():
                raise click.BadParameter(f"{part!r} is not a partition number.", param_hint="'-p' / '--partition'")
            if int(part) not in out:
                out.append(int(part))
    return out or None


class PartitionReader:
    """Reads one partition forward from ``offset`` and stops at ``stop`` (exclusive) if set.

    Records the server does not return (transaction markers, and aborted records under
    read_committed) are stepped over: after an empty read, if the end offset measured before
    another read is still ahead, the first offset is invisible and is skipped.
    """

    def __init__(self, client: Client, topic: str, partition: int, offset: int, stop: int | None,
                 isolation: str, max_bytes: int) -> None:
        self.client = client
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.stop = stop
        self.isolation = isolation
        self.max_bytes = max_bytes
        self.path = f"/topics/{seg(topic)}/partitions/{partition}/records"

    @property
    def done(self) -> bool:
        return self.stop is not None and self.offset >= self.stop

    def bounds(self) -> tuple[int, int]:
        """(log start offset, end offset): the end is the high watermark, or the last stable
        offset under read_committed."""
        return partition_bounds(self.client.get(self.client.v3(f"/topics/{seg(self.topic)}/partitions/"
                                                               f"{self.partition}")), self.isolation)

    def _read(self, timeout_ms: int) -> list[dict]:
        params = {"offset": self.offset, "max_bytes": self.max_bytes, "timeout": timeout_ms}
        if self.isolation != "read_uncommitted":
            params["isolation_level"] = self.isolation
        try:
            return self.client.get(self.path, params=params, headers={"Accept": V2_BINARY},
                                   timeout_s=timeout_ms / 1000.0 + HTTP_SLACK_S)
        except DlogHTTPError as exc:
            if exc.kafka_error != "OFFSET_OUT_OF_RANGE":
                raise
            log_start, end = self.bounds()
            target = log_start if self.offset < log_start else min(self.offset, end)
            click.echo(f"warning: {self.topic}-{self.partition}: offset {self.offset} is out of range "
                       f"[{log_start}, {end}]; continuing at {target}", err=True)
            self.offset = target
            return []

    def poll(self, timeout_ms: int) -> list[Consumed]:
        """The next records (possibly none), waiting up to ``timeout_ms`` for the first."""
        if self.done:
            return []
        raw = self._read(timeout_ms)
        if not raw:
            _, end = self.bounds()
            if self.offset < end:
                raw = self._read(0)
                if not raw and self.offset < end:
                    self.offset += 1  # invisible at the time the end was measured: a marker or aborted
                    return []
        records = [Consumed.from_v2(self.topic, r) for r in raw if r["offset"] >= self.offset]
        if self.stop is not None:
            records = [r for r in records if r.offset < self.stop]
        if records:
            self.offset = records[-1].offset + 1
        elif raw:
            self.offset = max(self.offset, raw[-1]["offset"] + 1)
        return records


def partition_bounds(p: dict, isolation: str) -> tuple[int, int]:
    if p.get("high_watermark") is None:
        raise DlogHTTPError(f"Partition {p.get('topic_name')}-{p.get('partition_id')} has no leader "
                            "(its replicas' brokers are offline).", 503, 503, "LEADER_NOT_AVAILABLE")
    end = p["last_stable_offset"] if isolation == "read_committed" and p.get("last_stable_offset") is not None \
        else p["high_watermark"]
    return p["log_start_offset"], end


class Printer:
    """Writes records to stdout as bytes, flushing after each batch; stops at ``limit``."""

    def __init__(self, fmt: Callable[[Consumed], bytes], limit: int | None) -> None:
        self.fmt = fmt
        self.limit = limit
        self.count = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def write(self, records: list[Consumed]) -> None:
        chunks = []
        for r in records:
            if self.full:
                break
            chunks.append(self.fmt(r))
            self.count += 1
        if chunks:
            click.echo(b"".join(chunks), nl=False)  # bytes go to the binary stdout, flushed


@click.command("consume")
@click.argument("topic")
@click.option("-p", "--partition", "partitions", multiple=True, metavar="P[,P...]",
              help="Partitions to read (repeatable or comma-separated; default: all).")
@click.option("-o", "--offset", "offset", default="start", show_default=True, metavar="OFFSET",
              help="Where to start: start, end, N, +N (log start + N), -N (end - N), or FROM:TO "
                   "(TO exclusive, e.g. 10:20, :end, -5:).")
@click.option("-n", "--num", "num", type=click.IntRange(1), default=None, help="Stop after this many records.")
@click.option("-e", "--exit-at-end", "exit_at_end", is_flag=True,
              help="Stop at the end of each partition as it was at start-up (else follow new records).")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT",
              help=r"Output format: %t topic, %p partition, %o offset, %k key, %v value, %T/%d timestamp (ms), "
                   r"%h headers, %K/%V lengths, %H header count; escapes \n \t \xHH. Default '%v\n'.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per record: topic, partition, offset, timestamp, key, value, headers.")
@click.option("--isolation-level", "--isolation", "isolation",
              type=click.Choice(["read_uncommitted", "read_committed"]), default="read_uncommitted",
              show_default=True, help="read_committed hides open and aborted transactions.")
@click.option("--max-bytes", type=click.IntRange(1, 64 * 1024 * 1024), default=1024 * 1024, show_default=True,
              help="max_bytes of each read request.")
@click.option("--poll-ms", type=click.IntRange(0, 300_000), default=5000, show_default=True,
              help="How long each read waits for new records when following (the timeout query parameter).")
@with_client
def consume(client: Client, topic: str, partitions: tuple[str, ...], offset: str, num: int | None,
            exit_at_end: bool, fmt: str | None, as_json: bool, isolation: str, max_bytes: int, poll_ms: int) -> None:
    """Print the records of TOPIC, one per line by default, then follow new ones.

    Reads with GET /topics/{t}/partitions/{p}/records (no consumer group, nothing
    committed). Offsets outside the log are clamped to [log start, end]. With -e it stops at
    the end offsets read at start-up; otherwise it follows until -n records or Ctrl-C.

    Not implemented yet: timestamp offsets (@ts) and reading as a consumer group (--group,
    committed offsets); both are planned.

    Example:

    \b
        dlog consume orders -e
        dlog consume orders -p 0 -o -10 -e -f '%p:%o %k=%v\\n'
        dlog consume orders -o +100 -n 5 --json
        dlog consume orders -o end            # follow new records, like tail -f
    """
    if fmt is not None and as_json:
        raise click.UsageError("--format and --json exclude each other.")
    start_spec, stop_spec = parse_offset_range(offset)
    chosen = parse_partitions(partitions)
    if as_json:
        formatter = json_line
    else:
        compiled = compile_format(fmt if fmt is not None else r"%v\n")
        formatter = lambda r: render(compiled, r)  # noqa: E731
    parts = {p["partition_id"]: p for p in client.get(client.v3(f"/topics/{seg(topic)}/partitions"))["data"]}
    for p in chosen or []:
        if p not in parts:
            raise DlogHTTPError(f"Partition {p} of topic {topic!r} not found (it has {len(parts)}).", 404, 40402,
                                "UNKNOWN_TOPIC_OR_PARTITION")
    readers = []
    for pid in chosen or sorted(parts):
        log_start, end = partition_bounds(parts[pid], isolation)
        stop = _stop(stop_spec, log_start, end, exit_at_end)
        readers.append(PartitionReader(client, topic, pid, start_spec.resolve(log_start, end), stop, isolation,
                                       max_bytes))
    printer = Printer(formatter, num)
    try:
        if exit_at_end:
            _read_to_ends(readers, printer)
        else:
            _follow(readers, printer, poll_ms)
    except BrokenPipeError:
        _silence_stdout()
    except KeyboardInterrupt:
        pass


def _stop(stop_spec: OffsetSpec | None, log_start: int, end: int, exit_at_end: bool) -> int | None:
    stop = stop_spec.resolve(log_start, end) if stop_spec is not None else None
    if stop_spec is not None and stop_spec.base == "abs":
        stop = max(stop_spec.delta, log_start)  # an absolute TO may lie beyond today's end
    if exit_at_end:
        stop = end if stop is None else min(stop, end)
    return stop


def _read_to_ends(readers: list[PartitionReader], printer: Printer) -> None:
    """-e: every stop is at or below the end read at start-up, so no read has to wait; the
    partitions are read one after the other."""
    for reader in readers:
        while not reader.done and not printer.full:
            before = reader.offset
            printer.write(reader.poll(0))
            if reader.offset == before:  # the end moved below the stop (truncation): nothing more
                break
        if printer.full:
            return


_DONE = object()


def _follow(readers: list[PartitionReader], printer: Printer, poll_ms: int) -> None:
    """One thread per partition long-polls; the main thread prints until -n or every stop."""
    found: queue.Queue = queue.Queue()
    stopping = threading.Event()

    def run(reader: PartitionReader) -> None:
        reader.client = reader.client.clone()
        try:
            while not stopping.is_set() and not reader.done:
                records = reader.poll(poll_ms)
                if records:
                    found.put(records)
                elif poll_ms < 50:
                    stopping.wait(0.05)  # no long poll to wait in: do not spin
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            found.put(exc)
        finally:
            found.put(_DONE)
            reader.client.close()

    for reader in readers:
        threading.Thread(target=run, args=(reader,), name=f"dlog-consume-{reader.partition}", daemon=True).start()
    active = len(readers)
    try:
        while active and not printer.full:
            try:
                item = found.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _DONE:
                active -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                printer.write(item)
    finally:
        stopping.set()


def _silence_stdout() -> None:
    """After a closed pipe (``| head``), point stdout at /dev/null so exit does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def register(cli: click.Group) -> None:
    cli.add_command(consume)
