"""``dlog consume``: read partitions with the stateless read
``GET /topics/{t}/partitions/{p}/records`` (or as a consumer group member through a v2
consumer instance) and print each record (format string or JSON)."""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Callable

import click

from cli.http import V2_BINARY, Client, DlogHTTPError, seg, sigterm_as_interrupt, with_client
from cli.lookup import V2_JSON, offsets_for_times
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
              help="Partitions to read (repeatable or comma-separated; default: all). Not with --group.")
@click.option("-o", "--offset", "offset", default=None, metavar="OFFSET",
              help="Where to start: start (the default), end, N, +N (log start + N), -N (end - N), @TIMESTAMP, "
                   "or FROM:TO (TO exclusive, e.g. 10:20, :end, -5:, @-1h:@-30m). With --group only start or "
                   "end: where a partition without a committed offset begins.")
@click.option("-n", "--num", "num", type=click.IntRange(1), default=None, help="Stop after this many records.")
@click.option("-e", "--exit-at-end", "exit_at_end", is_flag=True,
              help="Stop at the end of each partition as it was at start-up (else follow new records).")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT",
              help=r"Output format: %t topic, %p partition, %o offset, %k key, %v value, %T/%d timestamp (ms), "
                   r"%h headers, %K/%V lengths, %H header count; escapes \n \t \xHH. Default '%v\n'.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per record: topic, partition, offset, timestamp, key, value, headers.")
@click.option("-g", "--group", "group", default=None, metavar="GROUP",
              help="Read as a member of consumer group GROUP: from its committed offsets, committing what "
                   "was printed.")
@click.option("--isolation-level", "--isolation", "isolation",
              type=click.Choice(["read_uncommitted", "read_committed"]), default="read_uncommitted",
              show_default=True, help="read_committed hides open and aborted transactions.")
@click.option("--read-committed", "read_committed", is_flag=True,
              help="Same as --isolation read_committed (rpk's flag).")
@click.option("--max-bytes", type=click.IntRange(1, 64 * 1024 * 1024), default=1024 * 1024, show_default=True,
              help="max_bytes of each read request.")
@click.option("--poll-ms", type=click.IntRange(0, 300_000), default=5000, show_default=True,
              help="How long each read waits for new records when following (the timeout query parameter).")
@with_client
def consume(client: Client, topic: str, partitions: tuple[str, ...], offset: str | None, num: int | None,
            exit_at_end: bool, fmt: str | None, as_json: bool, group: str | None, isolation: str,
            read_committed: bool, max_bytes: int, poll_ms: int) -> None:
    """Print the records of TOPIC, one per line by default, then follow new ones.

    Without --group it reads with GET /topics/{t}/partitions/{p}/records (no consumer group,
    nothing committed). Offsets outside the log are clamped to [log start, end]. With -e it
    stops at the end offsets read at start-up; otherwise it follows until -n records or Ctrl-C.

    @TIMESTAMP starts at the first record whose timestamp is at or after it: epoch ms
    (13 digits) or s (10 digits), ISO-8601 (2024-05-01, 2024-05-01T12:00:00Z; UTC unless a
    zone is given), now, or a time ago (-15m, -2h, -1d). As a TO it stops before that record
    (at the current end when there is none). There is no stateless offset-for-timestamp
    endpoint, so the lookup uses a throwaway v2 consumer instance (assign, seek by timestamp,
    commit, read the offsets back) in a private group that is deleted right after.

    With --group GROUP it is a v2 consumer instance of GROUP (POST /consumers/{group},
    subscribe, long-poll GET .../records): it reads from the group's committed offsets (-o
    start or end decides where a partition without one begins), commits each batch after
    printing it, and deletes the instance on exit or Ctrl-C. -e then stops once its partitions
    reach the ends they had at start-up. Move a group's offsets with `dlog group seek`.

    Example:

    \b
        dlog consume orders -e
        dlog consume orders -p 0 -o -10 -e -f '%p:%o %k=%v\\n'
        dlog consume orders -o +100 -n 5 --json
        dlog consume orders -o end            # follow new records, like tail -f
        dlog consume orders -o @-1h -e        # the last hour
        dlog consume orders -o @2024-05-01:@2024-05-02 --json
        dlog consume orders --group billing -e --isolation read_committed
    """
    if fmt is not None and as_json:
        raise click.UsageError("--format and --json exclude each other.")
    if read_committed:
        isolation = "read_committed"
    if as_json:
        formatter = json_line
    else:
        compiled = compile_format(fmt if fmt is not None else r"%v\n")
        formatter = lambda r: render(compiled, r)  # noqa: E731
    printer = Printer(formatter, num)
    if group is not None:
        if partitions:
            raise click.UsageError("--group and -p exclude each other: the group assigns the partitions.")
        reset = (offset or "start").strip().lower()
        if reset not in ("start", "oldest", "beginning", "earliest", "end", "newest", "latest"):
            raise click.BadParameter(f"{offset!r}: with --group, -o is start or end (where a partition without a "
                                     "committed offset begins); move the group's offsets with `dlog group seek`.",
                                     param_hint="'-o' / '--offset'")
        earliest = reset in ("start", "oldest", "beginning", "earliest")
        try:
            with sigterm_as_interrupt():  # kill/timeout also delete the instance
                GroupConsumer(client, group, topic, earliest, isolation, max_bytes).run(printer, exit_at_end,
                                                                                        poll_ms)
        except BrokenPipeError:
            _silence_stdout()
        except KeyboardInterrupt:
            pass
        return
    start_spec, stop_spec = parse_offset_range(offset or "start")
    chosen = parse_partitions(partitions)
    parts = {p["partition_id"]: p for p in client.get(client.v3(f"/topics/{seg(topic)}/partitions"))["data"]}
    for p in chosen or []:
        if p not in parts:
            raise DlogHTTPError(f"Partition {p} of topic {topic!r} not found (it has {len(parts)}).", 404, 40402,
                                "UNKNOWN_TOPIC_OR_PARTITION")
    pids = chosen or sorted(parts)
    found = offsets_for_times(client, topic, pids, [s.delta for s in (start_spec, stop_spec)
                                                    if s is not None and s.base == "ts"])

    def at(spec: OffsetSpec | None, pid: int) -> OffsetSpec | None:
        return OffsetSpec("abs", found[spec.delta][pid]) if spec is not None and spec.base == "ts" else spec

    readers = []
    for pid in pids:
        log_start, end = partition_bounds(parts[pid], isolation)
        stop = _stop(at(stop_spec, pid), log_start, end, exit_at_end)
        readers.append(PartitionReader(client, topic, pid, at(start_spec, pid).resolve(log_start, end), stop,
                                       isolation, max_bytes))
    try:
        if exit_at_end:
            _read_to_ends(readers, printer)
        else:
            _follow(readers, printer, poll_ms)
    except BrokenPipeError:
        _silence_stdout()
    except KeyboardInterrupt:
        pass


class GroupConsumer:
    """``consume --group``: one REST Proxy v2 consumer instance, subscribed to one topic."""

    def __init__(self, client: Client, group: str, topic: str, earliest: bool, isolation: str,
                 max_bytes: int) -> None:
        self.client = client
        self.group = group
        self.topic = topic
        self.earliest = earliest
        self.isolation = isolation
        self.max_bytes = max_bytes
        self.base: str | None = None

    def run(self, printer: "Printer", exit_at_end: bool, poll_ms: int) -> None:
        client = self.client
        parts = client.get(client.v3(f"/topics/{seg(self.topic)}/partitions"))["data"]  # 404 for an unknown topic
        ends = {p["partition_id"]: partition_bounds(p, self.isolation)[1] for p in parts}
        answer = client.post(f"/consumers/{seg(self.group)}", {
            "format": "binary", "auto.offset.reset": "earliest" if self.earliest else "latest",
            "auto.commit.enable": "false", "isolation.level": self.isolation})
        self.base = f"/consumers/{seg(self.group)}/instances/{seg(answer['instance_id'])}"
        try:
            client.post(f"{self.base}/subscription", {"topics": [self.topic]})
            timeout_ms = min(poll_ms, 100) if exit_at_end else poll_ms
            while not printer.full:
                raw = client.get(f"{self.base}/records", params={"timeout": timeout_ms, "max_bytes": self.max_bytes},
                                 headers={"Accept": V2_BINARY}, timeout_s=timeout_ms / 1000.0 + HTTP_SLACK_S)
                records = [Consumed.from_v2(r["topic"], r) for r in raw]
                before = printer.count
                printer.write(records)
                printed = records[:printer.count - before]
                if printed or exit_at_end:
                    self._commit(printed, complete=len(printed) == len(records))
                if exit_at_end and not records and self._at_ends(ends):
                    return
        finally:
            self.close()

    def _commit(self, printed: list[Consumed], complete: bool) -> None:
        """Commit after printing: every position when all the poll's records were printed (that
        also steps over transaction markers), else just past the last printed record of each
        partition (-n stopped inside the batch)."""
        try:
            if complete:
                self.client.request("POST", f"{self.base}/offsets", headers={"Content-Type": V2_JSON})
            else:
                last: dict[int, int] = {}
                for r in printed:
                    last[r.partition] = max(last.get(r.partition, -1), r.offset)
                # v2's "offsets" commits offset + 1: the last record consumed is sent.
                self.client.post(f"{self.base}/offsets", {"offsets": [
                    {"topic": self.topic, "partition": p, "offset": o} for p, o in sorted(last.items())]},
                    headers={"Content-Type": V2_JSON})
        except DlogHTTPError as exc:
            if exc.kafka_error not in ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"):
                raise
            click.echo(f"warning: commit refused ({exc.kafka_error}): the group rebalanced; records may be "
                       "read again by the new owner", err=True)

    def _at_ends(self, ends: dict[int, int]) -> bool:
        """Whether every partition this member owns has reached its end from start-up."""
        owned = self.client.get(f"{self.base}/assignments")["partitions"]
        committed = {o["partition_id"]: o["offset"] for o in self.client.get(
            self.client.v3(f"/consumer-groups/{seg(self.group)}/offsets"))["data"] if o["topic_name"] == self.topic}
        return all(committed.get(p["partition"], -1) >= ends.get(p["partition"], 0) for p in owned
                   if p["topic"] == self.topic)

    def close(self) -> None:
        if self.base is None:
            return
        base, self.base = self.base, None
        try:
            self.client.delete(base)
        except (DlogHTTPError, KeyboardInterrupt):
            click.echo(f"warning: could not delete consumer instance {base}; it expires after "
                       "consumer.instance.timeout.ms", err=True)


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
