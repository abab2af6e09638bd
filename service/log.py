"""UnifiedLog: one partition replica's records in one broker file.

The log owns offsets: only ``append_as_leader`` assigns them, dense from the log end offset.
Every function here runs inside a transaction its caller opened on the broker file
(``Database.write`` for changes, ``Database.read`` for reads) and never commits, so a caller
can put the append, the log end offset and later the producer state in one transaction.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, select, update

from service import leader_epoch as leader_epoch_cache
from service import producer_state
from service import schema
from service.db import Database, driver_sql, run
from service.errors import Errors, KafkaError
from service.types import NO_SEQUENCE, Record, StoredRecord

logger = logging.getLogger(__name__)

_rec = schema.record.c
_log = schema.log.c

_INSERT_RECORD, _INSERT_ORDER = driver_sql(insert(schema.record).values(
    log_id=bindparam("log_id"), offset=bindparam("offset"), timestamp=bindparam("timestamp"),
    key=bindparam("key"), value=bindparam("value"), headers=bindparam("headers"),
    leader_epoch=bindparam("leader_epoch"), producer_id=bindparam("producer_id"),
    producer_epoch=bindparam("producer_epoch"), sequence=bindparam("sequence"),
    is_transactional=bindparam("is_transactional"), is_control=bindparam("is_control")))
assert _INSERT_ORDER == ("log_id", "offset", "timestamp", "key", "value", "headers", "leader_epoch",
                         "producer_id", "producer_epoch", "sequence", "is_transactional", "is_control")

_MAX_ROWS_PER_INSERT = 256  # 12 columns: 3,072 parameters, within SQLite's limit since 3.32 (32,766)
_MULTI_INSERT: dict[int, str] = {1: _INSERT_RECORD}


def _multi_insert_sql(n: int) -> str:
    """The record INSERT of ``n`` rows in one statement (one VALUES list), compiled once."""
    sql = _MULTI_INSERT.get(n)
    if sql is None:
        stmt = insert(schema.record).values(
            [{c: bindparam(f"{c}_{i}") for c in _INSERT_ORDER} for i in range(n)])
        sql, order = driver_sql(stmt)
        assert order == tuple(f"{c}_{i}" for i in range(n) for c in _INSERT_ORDER), order[:13]
        _MULTI_INSERT[n] = sql
    return sql


def insert_records(conn: Connection, rows: Sequence[tuple]) -> None:
    """Insert record rows (in ``_INSERT_ORDER``) inside the caller's write transaction, in a
    few multi-row statements: chunks of a power of two rows, at most 256.

    Not ``executemany``: the driver releases the GIL around every row's step and must take it
    back after each one; while another thread of the process runs Python, each retake can
    wait a whole switch interval (Python's default 5 ms; 1 ms in ``dlog serve``'s workers),
    and this thread holds the file's write lock all the while. Measured here with one busy
    thread beside it: a 100-row executemany commit took 350 ms, the same rows in one
    statement 17 ms (0.45 and 0.38 ms with no other thread).
    """
    total = len(rows)
    start = 0
    while start < total:
        n = min(_MAX_ROWS_PER_INSERT, 1 << ((total - start).bit_length() - 1))
        run(conn, _multi_insert_sql(n), [v for row in rows[start:start + n] for v in row])
        start += n


_READ_RECORDS, _READ_ORDER = driver_sql(
    select(_rec.offset, _rec.timestamp, _rec.key, _rec.value, _rec.headers, _rec.leader_epoch,
           _rec.producer_id, _rec.is_transactional, _rec.is_control)
    .where(_rec.log_id == bindparam("log_id"), _rec.offset >= bindparam("start"), _rec.offset < bindparam("end"))
    .order_by(_rec.offset).limit(bindparam("limit")))
assert _READ_ORDER == ("log_id", "start", "end", "limit", "param_1")  # param_1: SQLite's OFFSET 0

_SELECT_LOG, _ = driver_sql(
    select(_log.log_id, _log.log_start_offset, _log.log_end_offset, _log.high_watermark, _log.size_bytes)
    .where(_log.topic_id == bindparam("topic_id"), _log.partition_id == bindparam("partition_id")))

_UPDATE_AFTER_APPEND, _UPDATE_ORDER = driver_sql(
    update(schema.log).where(_log.log_id == bindparam("id"))
    .values(log_end_offset=bindparam("leo"), size_bytes=_log.size_bytes + bindparam("added")))
assert _UPDATE_ORDER == ("leo", "added", "id")

_ADVANCE_HW, _ADVANCE_ORDER = driver_sql(
    update(schema.log).where(_log.log_id == bindparam("id"), _log.high_watermark < bindparam("hw_guard"))
    .values(high_watermark=bindparam("hw")))
assert _ADVANCE_ORDER == ("hw", "id", "hw_guard")

_READ_BATCH_ROWS = 2000


class LogState(NamedTuple):
    log_id: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    size_bytes: int


@dataclass(frozen=True)
class LogAppendInfo:
    """What an append did (Kafka's ``LogAppendInfo``): the offsets and timestamps it assigned."""

    first_offset: int
    last_offset: int
    timestamps: tuple[int, ...]
    log_start_offset: int
    duplicate: bool = False  # a retry of one of the producer's last five batches: nothing written


@dataclass(frozen=True)
class FetchDataInfo:
    records: list[StoredRecord]
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    max_visible_offset: int = 0  # the HW, or the LSO for read_committed: the read stopped below it


def load(conn: Connection, topic_id: str, partition_id: int) -> LogState | None:
    row = run(conn, _SELECT_LOG, (topic_id, partition_id)).fetchone()
    return LogState(*row) if row is not None else None


_UPDATE_AFTER_FOLLOWER_APPEND, _FOLLOWER_UPDATE_ORDER = driver_sql(
    update(schema.log).where(_log.log_id == bindparam("id"))
    .values(log_end_offset=bindparam("leo"), high_watermark=bindparam("hw"),
            size_bytes=_log.size_bytes + bindparam("added")))
assert _FOLLOWER_UPDATE_ORDER == ("leo", "hw", "added", "id")

_SELECT_HW, _ = driver_sql(select(_log.high_watermark).where(
    _log.topic_id == bindparam("topic_id"), _log.partition_id == bindparam("partition_id")))


def current_high_watermark(db: Database, engine: Engine, topic_id: str, partition_id: int) -> int:
    """A replica's high watermark read outside any transaction (one statement is its own
    snapshot): what a waiting produce polls, at a few microseconds a look."""
    row = db.query_one(engine, _SELECT_HW, (topic_id, partition_id))
    return row[0] if row is not None else 0


_e = schema.leader_epoch.c
_SELECT_POSITION, _ = driver_sql(
    select(_log.log_id, _log.log_start_offset, _log.log_end_offset, _log.high_watermark, _log.size_bytes,
           select(func.max(_e.epoch)).where(_e.log_id == _log.log_id).scalar_subquery())
    .where(_log.topic_id == bindparam("topic_id"), _log.partition_id == bindparam("partition_id")))


def replica_position(db: Database, engine: Engine, topic_id: str, partition_id: int) -> tuple[LogState | None,
                                                                                                 int | None]:
    """A replica's log state and its latest leader epoch, read outside any transaction in one
    statement (one consistent snapshot): what a fetch step needs of a follower before it
    reads the leader. The write that follows re-checks the log end offset it relies on."""
    row = db.query_one(engine, _SELECT_POSITION, (topic_id, partition_id))
    if row is None:
        return None, None
    return LogState(*row[:5]), row[5]


def load_or_create(conn: Connection, topic_id: str, topic_name: str, partition_id: int) -> LogState:
    """The log row of a replica, created empty on first use (needs a write transaction)."""
    state = load(conn, topic_id, partition_id)
    if state is None:
        conn.execute(insert(schema.log).values(topic_id=topic_id, topic_name=topic_name, partition_id=partition_id))
        state = load(conn, topic_id, partition_id)
        assert state is not None
    return state


def append_as_leader(conn: Connection, state: LogState, records: Sequence[Record], leader_epoch: int,
                     now_ms: int, log_append_time: bool = False,
                     producer: producer_state.ProducerBatch = producer_state.ProducerBatch()) -> LogAppendInfo:
    """Append ``records`` at the log end offset, stamped with ``leader_epoch``.

    Runs in the caller's write transaction: the producer checks, the records, the new log end
    offset and the producer state commit together or not at all. An idempotent batch that
    repeats one of the producer's last five is answered with the original offsets and writes
    nothing. Records the leader epoch in the epoch cache first if it is new (Kafka's
    ``Partition.makeLeader`` does it before the first write of an epoch).

    :raises INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_RECORD: see
        ``producer_state.validate_append``; nothing is written.
    """
    if producer.is_idempotent:
        entry = producer_state.load_entry(conn, state.log_id, producer.producer_id, producer)
        duplicate = producer_state.validate_append(entry, producer, len(records))
        if duplicate is not None:
            stamps = conn.execute(select(_rec.timestamp).where(
                _rec.log_id == state.log_id, _rec.offset >= duplicate.first_offset,
                _rec.offset <= duplicate.last_offset).order_by(_rec.offset)).scalars().all()
            if len(stamps) != duplicate.last_offset - duplicate.first_offset + 1:  # below the log start now
                stamps = [duplicate.max_timestamp] * (duplicate.last_offset - duplicate.first_offset + 1)
            return LogAppendInfo(duplicate.first_offset, duplicate.last_offset, tuple(stamps),
                                 state.log_start_offset, duplicate=True)
    base = state.log_end_offset
    leader_epoch_cache.assign(conn, state.log_id, leader_epoch, base)
    log_id = state.log_id
    rows = []
    timestamps = []
    added = 0
    seq = producer.base_sequence
    pid, epoch, txn = producer.producer_id, producer.producer_epoch, producer.is_transactional
    # Per-record sequences: consecutive from the base, wrapping past int32 max to 0.
    wraps = seq != NO_SEQUENCE and seq > producer_state.INT32_MAX - len(records)
    step = 0 if seq == NO_SEQUENCE else 1
    for i, r in enumerate(records):
        ts = now_ms if (log_append_time or r.timestamp is None) else r.timestamp
        timestamps.append(ts)
        added += r.size
        rows.append((log_id, base + i, ts, r.key, r.value, r.headers, leader_epoch, pid, epoch,
                     producer_state.increment_sequence(seq, i) if wraps else seq + i * step, txn, False))
    insert_records(conn, rows)
    last = base + len(rows) - 1
    run(conn, _UPDATE_AFTER_APPEND, (last + 1, added, log_id))
    if producer.is_idempotent:
        producer_state.append_batch(conn, log_id, producer_state.data_header(producer, base, last, max(timestamps)))
    return LogAppendInfo(base, last, tuple(timestamps), state.log_start_offset)


def append_control_marker(conn: Connection, state: LogState, leader_epoch: int, producer_id: int,
                          producer_epoch: int, control_type: int, now_ms: int) -> LogAppendInfo:
    """Write a transaction marker (COMMIT or ABORT control record) for a producer, at most once
    per (producer id, epoch): a repeated marker write answers with the first one's offset.

    The marker takes one offset, closes the producer's open transaction on this partition
    (recording it in the transaction index) and sets its epoch (3.24-3.26).

    :raises INVALID_PRODUCER_EPOCH: the partition saw a newer epoch of this producer.
    """
    existing = producer_state.find_marker(conn, state.log_id, producer_id, producer_epoch)
    if existing is not None:
        return LogAppendInfo(existing.base_offset, existing.last_offset, (existing.max_timestamp,),
                             state.log_start_offset, duplicate=True)
    producer_state.validate_marker(producer_state.load_entry(conn, state.log_id, producer_id), producer_id,
                                   producer_epoch)
    offset = state.log_end_offset
    leader_epoch_cache.assign(conn, state.log_id, leader_epoch, offset)
    key = struct.pack(">hh", 0, control_type)
    value = struct.pack(">hi", 0, 0)  # version, coordinator epoch
    insert_records(conn, [(state.log_id, offset, now_ms, key, value, None, leader_epoch, producer_id,
                           producer_epoch, NO_SEQUENCE, True, True)])
    run(conn, _UPDATE_AFTER_APPEND, (offset + 1, len(key) + len(value), state.log_id))
    producer_state.append_batch(conn, state.log_id, producer_state.BatchHeader(
        offset, offset, producer_id, producer_epoch, NO_SEQUENCE, NO_SEQUENCE, True, True, control_type, now_ms))
    return LogAppendInfo(offset, offset, (now_ms,), state.log_start_offset)


def last_stable_offset(conn: Connection, state: LogState) -> int:
    """Kafka's ``lastStableOffset`` (3.30): the first unstable offset if below the HW, else the HW."""
    unstable = producer_state.first_unstable_offset(conn, state.log_id, state.high_watermark)
    return min(unstable, state.high_watermark) if unstable is not None else state.high_watermark


def maybe_increment_high_watermark(conn: Connection, state: LogState, new_high_watermark: int) -> int:
    """Move the high watermark forward to ``new_high_watermark`` (never back, never past the
    LEO in ``state``, which must be current in this transaction). Returns the high watermark."""
    candidate = min(new_high_watermark, state.log_end_offset)
    if candidate > state.high_watermark:
        run(conn, _ADVANCE_HW, (candidate, state.log_id, candidate))
        return candidate
    return state.high_watermark


def read(conn: Connection, state: LogState | None, start_offset: int, max_bytes: int,
         max_offset: int | None = None, read_committed: bool = False) -> FetchDataInfo:
    """Records from ``start_offset`` below ``max_offset`` (default the high watermark, or the
    last stable offset when ``read_committed``), up to ``max_bytes`` but always at least one
    record when one is visible (Kafka's KIP-74 rule).

    read_committed leaves out records of aborted transactions (server-side filtering, 3.34);
    control records are returned so the caller's position can move past them.

    :raises OFFSET_OUT_OF_RANGE: ``start_offset`` is below the log start or beyond the LEO.
    """
    if state is None:
        state = LogState(0, 0, 0, 0, 0)
    if start_offset < state.log_start_offset or start_offset > state.log_end_offset:
        raise KafkaError(Errors.OFFSET_OUT_OF_RANGE,
                         f"Offset {start_offset} is out of range: the log holds offsets "
                         f"{state.log_start_offset} to {state.log_end_offset}.")
    if read_committed and state.log_id:
        end = last_stable_offset(conn, state)
        aborted = producer_state.aborted_ranges(conn, state.log_id, start_offset, end)
    else:
        end = state.high_watermark
        aborted = []
    if max_offset is not None:
        end = min(max_offset, state.log_end_offset)
    out: list[StoredRecord] = []
    used = 0
    position = start_offset
    # Ask SQLite for about as many rows as max_bytes holds at the log's average record size
    # (plus a margin); a short guess only costs another query, an overlong one reads rows
    # that are thrown away.
    stored = state.log_end_offset - state.log_start_offset
    average = state.size_bytes // stored if stored > 0 and state.size_bytes > 0 else 1
    limit = max(16, min(_READ_BATCH_ROWS, max_bytes // max(average, 1) + max_bytes // max(average, 1) // 8 + 2))
    while position < end:
        rows = run(conn, _READ_RECORDS, (state.log_id, position, end, limit, 0)).fetchall()
        if not rows:
            break
        for row in rows:
            if aborted and row[7] and not row[8] and any(
                    pid == row[6] and first <= row[0] <= last for pid, first, last in aborted):
                # A data record of an aborted transaction: never shown to read_committed. Its
                # ABORT marker (the range's last offset) is kept, so the reader moves past it.
                continue
            size = len(row[2] or b"") + len(row[3] or b"") + len(row[4] or b"")
            if out and used + size > max_bytes:
                return FetchDataInfo(out, state.high_watermark, state.log_start_offset, state.log_end_offset, end)
            used += size
            out.append(StoredRecord(*row))
        position = rows[-1][0] + 1
    return FetchDataInfo(out, state.high_watermark, state.log_start_offset, state.log_end_offset, end)


def delete_retained_records(conn: Connection, state: LogState, retention_ms: int, retention_bytes: int,
                            now_ms: int) -> int:
    """Apply retention: advance the log start offset past records older than ``retention_ms``
    and past the oldest records while the log holds more than ``retention_bytes``.

    Only records below the high watermark are deleted (as Kafka deletes only segments below
    it). Returns the number of records deleted. Runs in the caller's write transaction.
    """
    new_start = state.log_start_offset
    hw = state.high_watermark
    if retention_ms >= 0:
        cutoff = now_ms - retention_ms
        first_kept = conn.execute(
            select(_rec.offset).where(_rec.log_id == state.log_id, _rec.offset >= new_start, _rec.offset < hw,
                                      _rec.timestamp >= cutoff).order_by(_rec.offset).limit(1)).scalar()
        new_start = first_kept if first_kept is not None else hw
    size_expr = func.coalesce(func.length(_rec.key), 0) + func.coalesce(func.length(_rec.value), 0) \
        + func.coalesce(func.length(_rec.headers), 0)

    def size_between(lo: int, hi: int) -> int:
        return conn.execute(select(func.coalesce(func.sum(size_expr), 0)).where(
            _rec.log_id == state.log_id, _rec.offset >= lo, _rec.offset < hi)).scalar_one()

    removed_bytes = size_between(state.log_start_offset, new_start) if new_start > state.log_start_offset else 0
    if retention_bytes >= 0 and state.size_bytes - removed_bytes > retention_bytes:
        excess = state.size_bytes - removed_bytes - retention_bytes
        for offset, size in conn.execute(
                select(_rec.offset, size_expr).where(_rec.log_id == state.log_id, _rec.offset >= new_start,
                                                     _rec.offset < hw).order_by(_rec.offset)):
            if excess <= 0:
                break
            excess -= size
            removed_bytes += size
            new_start = offset + 1
    if new_start <= state.log_start_offset:
        return 0
    deleted = conn.execute(delete(schema.record).where(
        _rec.log_id == state.log_id, _rec.offset < new_start)).rowcount
    producer_state.delete_batches_below(conn, state.log_id, new_start)
    conn.execute(update(schema.log).where(_log.log_id == state.log_id).values(
        log_start_offset=new_start, size_bytes=_log.size_bytes - removed_bytes))
    logger.info("[log_id=%s] retention moved the log start offset to %s (%s records)", state.log_id, new_start, deleted)
    return deleted


def offset_for_timestamp(conn: Connection, state: LogState, timestamp: int) -> int:
    """Kafka's ListOffsets by timestamp: the first offset below the HW whose record timestamp
    is >= ``timestamp``, or the HW when there is none."""
    found = conn.execute(select(func.min(_rec.offset)).where(
        _rec.log_id == state.log_id, _rec.offset >= state.log_start_offset, _rec.offset < state.high_watermark,
        _rec.timestamp >= timestamp, _rec.is_control.is_(False))).scalar()
    return state.high_watermark if found is None else found


def count_data_records(conn: Connection, topic_id: str, partition_id: int, start: int, end: int) -> int:
    """Records that are not control records in [start, end) of a replica's log."""
    state = load(conn, topic_id, partition_id)
    if state is None:
        return 0
    return conn.execute(select(func.count()).select_from(schema.record).where(
        _rec.log_id == state.log_id, _rec.offset >= start, _rec.offset < end, _rec.is_control.is_(False))).scalar_one()


def delete_log(conn: Connection, log_id: int) -> None:
    conn.execute(delete(schema.log).where(_log.log_id == log_id))


def all_logs(conn: Connection) -> list:
    return conn.execute(select(schema.log)).all()


def latest_timestamp(conn: Connection, state: LogState) -> int | None:
    return conn.execute(select(func.max(_rec.timestamp)).where(
        and_(_rec.log_id == state.log_id, _rec.offset >= state.log_start_offset))).scalar()


# ---------------------------------------------------------------------------- replication
_READ_FOR_FOLLOWER, _FOLLOWER_ORDER = driver_sql(
    select(_rec.offset, _rec.timestamp, _rec.key, _rec.value, _rec.headers, _rec.leader_epoch, _rec.producer_id,
           _rec.producer_epoch, _rec.sequence, _rec.is_transactional, _rec.is_control)
    .where(_rec.log_id == bindparam("log_id"), _rec.offset >= bindparam("start"), _rec.offset < bindparam("end"))
    .order_by(_rec.offset).limit(bindparam("limit")))
assert _FOLLOWER_ORDER == ("log_id", "start", "end", "limit", "param_1")


def read_for_follower(conn: Connection, state: LogState, start_offset: int, max_records: int) -> list[tuple]:
    """Raw records from ``start_offset`` up to the leader's LEO (followers copy beyond the HW),
    each row ``(offset, timestamp, key, value, headers, leader_epoch, producer_id,
    producer_epoch, sequence, is_transactional, is_control)``."""
    return run(conn, _READ_FOR_FOLLOWER, (state.log_id, start_offset, state.log_end_offset, max_records, 0)).fetchall()


_RECORD_EPOCH, _ = driver_sql(select(_rec.leader_epoch).where(_rec.log_id == bindparam("log_id"),
                                                               _rec.offset == bindparam("offset")))


def leader_epoch_at(conn: Connection, state: LogState, offset: int) -> int | None:
    """The leader epoch of this replica's record at ``offset`` (None: no such record)."""
    row = run(conn, _RECORD_EPOCH, (state.log_id, offset)).fetchone()
    return row[0] if row is not None else None


def append_as_follower(conn: Connection, state: LogState, rows: Sequence[tuple], leader_high_watermark: int,
                       batches: Sequence = ()) -> LogState:
    """Append records copied from the leader, keeping their offsets and leader epochs, and
    the leader's batch headers for them (``batches``), replayed into the producer state.

    The caller guarantees (inside this write transaction) that ``rows`` start at this
    replica's LEO. Updates the epoch cache for each new epoch, the LEO, the size and the
    follower's high watermark = min(leader HW, own LEO) (Kafka 1.8).
    """
    leo = state.log_end_offset
    added = 0
    latest = leader_epoch_cache.latest_epoch(conn, state.log_id)
    params = []
    for row in rows:
        offset, epoch = row[0], row[5]
        if offset != leo:
            raise ValueError(f"follower append at offset {offset}, expected {leo}")
        if latest is None or epoch > latest:
            leader_epoch_cache.assign(conn, state.log_id, epoch, offset, latest)
            latest = epoch
        added += len(row[2] or b"") + len(row[3] or b"") + len(row[4] or b"")
        params.append((state.log_id, *row))
        leo += 1
    if params:
        insert_records(conn, params)
    producer_state.apply_replicated(conn, state.log_id, batches)
    hw = max(state.high_watermark, min(leader_high_watermark, leo))
    run(conn, _UPDATE_AFTER_FOLLOWER_APPEND, (leo, hw, added, state.log_id))
    return state._replace(log_end_offset=leo, high_watermark=hw, size_bytes=state.size_bytes + added)


def truncate_to(conn: Connection, state: LogState, offset: int) -> LogState:
    """Remove every record at or above ``offset`` (Kafka's ``truncateTo``): the LEO becomes
    ``offset``, the high watermark is clamped to it and epochs starting there are dropped."""
    if offset >= state.log_end_offset:
        return state
    offset = max(offset, state.log_start_offset)
    size_expr = func.coalesce(func.sum(func.coalesce(func.length(_rec.key), 0) + func.coalesce(
        func.length(_rec.value), 0) + func.coalesce(func.length(_rec.headers), 0)), 0)
    removed = conn.execute(select(size_expr).where(_rec.log_id == state.log_id, _rec.offset >= offset)).scalar_one()
    conn.execute(delete(schema.record).where(_rec.log_id == state.log_id, _rec.offset >= offset))
    leader_epoch_cache.truncate_from_end(conn, state.log_id, offset)
    producer_state.truncate_and_reload(conn, state.log_id, offset)
    hw = min(state.high_watermark, offset)
    conn.execute(update(schema.log).where(_log.log_id == state.log_id).values(
        log_end_offset=offset, high_watermark=hw, size_bytes=_log.size_bytes - removed))
    logger.info("[log_id=%s] truncated from %s to %s", state.log_id, state.log_end_offset, offset)
    return state._replace(log_end_offset=offset, high_watermark=hw, size_bytes=state.size_bytes - removed)


def truncate_fully_and_start_at(conn: Connection, state: LogState, offset: int) -> LogState:
    """Delete the whole log and restart it empty at ``offset`` (a follower that fell below the
    leader's log start offset, Kafka 1.37)."""
    conn.execute(delete(schema.record).where(_rec.log_id == state.log_id))
    leader_epoch_cache.clear(conn, state.log_id)
    producer_state.clear(conn, state.log_id)
    conn.execute(update(schema.log).where(_log.log_id == state.log_id).values(
        log_start_offset=offset, log_end_offset=offset, high_watermark=offset, size_bytes=0))
    logger.info("[log_id=%s] truncated fully, restarting at %s", state.log_id, offset)
    return LogState(state.log_id, offset, offset, offset, 0)
