"""ProducerStateManager: per partition replica, what each idempotent producer last wrote.

Kafka keeps a ``ProducerStateEntry`` per producer id: its epoch and the metadata of its last
five batches, used to deduplicate retries and to check sequence order. Here the entry is a
``producer_state`` row and the batches are ``record_batch`` rows, written in the same
transaction as the records they describe, on the leader (after validation, origin CLIENT)
and on every follower (no validation, origin REPLICATION). After a truncation the state is
replayed from the batches that remain (Kafka's ``truncateAndReload``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from sqlalchemy import Connection, bindparam, case, delete, func, insert, null, select, true
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service import schema
from service.db import driver_sql, run
from service.errors import Errors, KafkaError
from service.types import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE

logger = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5
INT32_MAX = 2**31 - 1

_b = schema.record_batch.c
_s = schema.producer_state.c


def increment_sequence(sequence: int, increment: int) -> int:
    """Kafka's ``DefaultRecordBatch.incrementSequence``: sequences wrap past int32 max to 0."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


class BatchMetadata(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    max_timestamp: int


@dataclass(frozen=True)
class ProducerStateEntry:
    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_offset: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_first_offset: int | None
    batches: tuple[BatchMetadata, ...]  # oldest first, at most five, all of producer_epoch

    def find_duplicate_batch(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """Kafka's ``findDuplicateBatch``: the cached batch with exactly this sequence range."""
        if epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return b
        return None


class ProducerBatch(NamedTuple):
    """The producer fields of a batch to append (all -1 for a plain batch)."""

    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    base_sequence: int = NO_SEQUENCE
    is_transactional: bool = False
    transactional_id: str | None = None

    @property
    def is_idempotent(self) -> bool:
        return self.producer_id >= 0


_SELECT_STATE, _ = driver_sql(select(schema.producer_state).where(
    _s.log_id == bindparam("log_id"), _s.producer_id == bindparam("pid")))
_SELECT_BATCHES, _ = driver_sql(
    select(_b.base_sequence, _b.last_sequence, _b.base_offset, _b.last_offset, _b.max_timestamp)
    .where(_b.log_id == bindparam("log_id"), _b.producer_id == bindparam("pid"),
           _b.producer_epoch == bindparam("epoch"), _b.is_control == bindparam("ctl"))
    .order_by(_b.base_offset.desc()).limit(bindparam("n")))


_STATE_COLUMNS = tuple(c.name for c in schema.producer_state.columns)


def _state_row(conn: Connection, log_id: int, producer_id: int) -> dict | None:
    row = run(conn, _SELECT_STATE, (log_id, producer_id)).fetchone()
    return dict(zip(_STATE_COLUMNS, row)) if row is not None else None


def load_entry(conn: Connection, log_id: int, producer_id: int,
               batch: ProducerBatch | None = None) -> ProducerStateEntry | None:
    """The producer's state on this replica, with its last five batches (oldest first).

    Given the ``batch`` about to be checked, the five are not read when it is the next in
    sequence of the same epoch (the common case): it cannot repeat any of them, since they
    end at the last sequence and five batches cannot wrap around the int32 sequence space.
    """
    m = _state_row(conn, log_id, producer_id)
    if m is None:
        return None
    last = m["last_sequence"]
    if batch is not None and batch.producer_epoch == m["producer_epoch"] and last != NO_SEQUENCE \
            and batch.base_sequence == increment_sequence(last, 1):
        batches = []
    else:
        batches = run(conn, _SELECT_BATCHES, (log_id, producer_id, m["producer_epoch"], False,
                                              NUM_BATCHES_TO_RETAIN, 0)).fetchall()
    return ProducerStateEntry(producer_id, m["producer_epoch"], m["last_sequence"], m["last_offset"],
                              m["last_timestamp"], m["coordinator_epoch"], m["current_txn_first_offset"],
                              tuple(BatchMetadata(*b) for b in reversed(batches)))


def validate_append(entry: ProducerStateEntry | None, batch: ProducerBatch, count: int) -> BatchMetadata | None:
    """Kafka's broker checks for a client batch, in Kafka's order (2.9-2.12).

    Returns the original batch when this one is a duplicate of one of the last five (the
    caller answers with its offsets and writes nothing).

    :raises INVALID_RECORD: an idempotent batch without a valid base sequence.
    :raises INVALID_PRODUCER_EPOCH: the batch's epoch is older than the producer's.
    :raises OUT_OF_ORDER_SEQUENCE_NUMBER: a gap, or a new epoch not starting at 0.
    """
    if batch.base_sequence < 0 or batch.base_sequence > INT32_MAX:
        raise KafkaError(Errors.INVALID_RECORD, "An idempotent batch needs a sequence between 0 and 2147483647.")
    last_seq = increment_sequence(batch.base_sequence, count - 1)
    if entry is not None:
        duplicate = entry.find_duplicate_batch(batch.producer_epoch, batch.base_sequence, last_seq)
        if duplicate is not None:
            return duplicate
        if not batch.is_transactional and entry.current_txn_first_offset is not None:
            raise KafkaError(Errors.INVALID_TXN_STATE,
                             f"Producer {batch.producer_id} has an open transaction on this partition; a "
                             "non-transactional batch is refused.")
        if batch.producer_epoch < entry.producer_epoch:
            raise KafkaError(Errors.INVALID_PRODUCER_EPOCH,
                             f"Producer {batch.producer_id} has epoch {batch.producer_epoch}, older than the "
                             f"current epoch {entry.producer_epoch}; nothing was written.")
    if entry is None or entry.producer_epoch == NO_PRODUCER_EPOCH:
        return None  # 2.12a: no state (new or expired producer): any sequence is accepted
    if batch.producer_epoch > entry.producer_epoch:
        if batch.base_sequence != 0:
            raise KafkaError(Errors.OUT_OF_ORDER_SEQUENCE_NUMBER,
                             f"A new epoch {batch.producer_epoch} of producer {batch.producer_id} must start at "
                             f"sequence 0, not {batch.base_sequence}; nothing was written.")
        return None
    expected = increment_sequence(entry.last_sequence, 1) if entry.last_sequence != NO_SEQUENCE else 0
    if batch.base_sequence != expected:
        raise KafkaError(Errors.OUT_OF_ORDER_SEQUENCE_NUMBER,
                         f"Producer {batch.producer_id} sent sequence {batch.base_sequence}; the next expected is "
                         f"{expected}; nothing was written.")
    return None


_STATE_VALUE_COLUMNS = ("producer_epoch", "last_sequence", "last_offset", "last_timestamp", "coordinator_epoch",
                        "current_txn_first_offset")
_REPLACE_STATE, _REPLACE_ORDER = driver_sql(insert(schema.producer_state).prefix_with("OR REPLACE").values(
    log_id=bindparam("log_id"), producer_id=bindparam("pid"),
    **{c: bindparam(c) for c in _STATE_VALUE_COLUMNS}))
assert _REPLACE_ORDER == ("log_id", "pid", *_STATE_VALUE_COLUMNS), _REPLACE_ORDER


class BatchHeader(NamedTuple):
    """A ``record_batch`` row: the header of a producer's batch or of a control batch."""

    base_offset: int
    last_offset: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    last_sequence: int
    is_transactional: bool
    is_control: bool
    control_type: int | None
    max_timestamp: int


CONTROL_ABORT = 0
CONTROL_COMMIT = 1
_INSERT_BATCH, _INSERT_BATCH_ORDER = driver_sql(insert(schema.record_batch).values(
    log_id=bindparam("log_id"), **{f: bindparam(f) for f in BatchHeader._fields}))
assert _INSERT_BATCH_ORDER == ("log_id", *BatchHeader._fields), _INSERT_BATCH_ORDER
_HEADER_COLUMNS = (_b.base_offset, _b.last_offset, _b.producer_id, _b.producer_epoch, _b.base_sequence,
                   _b.last_sequence, _b.is_transactional, _b.is_control, _b.control_type, _b.max_timestamp)


def _data_upsert():
    """Kafka's ``ProducerStateManager.update`` for a data batch as one statement: the epoch,
    last sequence and offset become the batch's, the timestamp never moves back, and a
    transactional batch opens the producer's transaction here unless one is open already."""
    stmt = sqlite_insert(schema.producer_state).values(
        log_id=bindparam("log_id"), producer_id=bindparam("pid"), producer_epoch=bindparam("epoch"),
        last_sequence=bindparam("last_seq"), last_offset=bindparam("last_offset"), last_timestamp=bindparam("ts"),
        coordinator_epoch=bindparam("coordinator_epoch"),
        current_txn_first_offset=case((bindparam("txn") == true(), bindparam("first_offset")), else_=null()))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(index_elements=[_s.log_id, _s.producer_id], set_={
        "producer_epoch": ex.producer_epoch, "last_sequence": ex.last_sequence, "last_offset": ex.last_offset,
        "last_timestamp": func.max(_s.last_timestamp, ex.last_timestamp),
        "current_txn_first_offset": func.coalesce(_s.current_txn_first_offset, ex.current_txn_first_offset)})


_UPSERT_DATA_STATE, _UPSERT_ORDER = driver_sql(_data_upsert())
assert _UPSERT_ORDER == ("log_id", "pid", "epoch", "last_seq", "last_offset", "ts", "coordinator_epoch", "txn",
                         "first_offset"), \
    _UPSERT_ORDER


def append_batch(conn: Connection, log_id: int, header: BatchHeader) -> None:
    """Record an appended batch and update the producer state (Kafka's
    ``ProducerAppendInfo.append`` then ``ProducerStateManager.update``), in the append's
    transaction. No validation: the leader validated before appending; a follower applies
    what the leader wrote."""
    run(conn, _INSERT_BATCH, (log_id, *header))
    if not header.is_control:
        # One statement, no read of the current state: this runs for every idempotent batch
        # on the leader and on each follower.
        run(conn, _UPSERT_DATA_STATE, (log_id, header.producer_id, header.producer_epoch, header.last_sequence,
                                       header.last_offset, header.max_timestamp, -1, bool(header.is_transactional),
                                       header.base_offset))
        return
    _apply(conn, log_id, header, record_index=True)


def data_header(batch: ProducerBatch, first_offset: int, last_offset: int, max_timestamp: int) -> BatchHeader:
    return BatchHeader(first_offset, last_offset, batch.producer_id, batch.producer_epoch, batch.base_sequence,
                       increment_sequence(batch.base_sequence, last_offset - first_offset), batch.is_transactional,
                       False, None, max_timestamp)


_FIRST_OPEN_TXN_OF_OTHERS, _ = driver_sql(select(func.min(_s.current_txn_first_offset)).where(
    _s.log_id == bindparam("log_id"), _s.producer_id != bindparam("pid")))
_INSERT_TXN_INDEX, _TXN_INDEX_ORDER = driver_sql(insert(schema.transaction_index).values(
    log_id=bindparam("log_id"), last_offset=bindparam("last"), producer_id=bindparam("pid"),
    first_offset=bindparam("first"), is_aborted=bindparam("aborted"), last_stable_offset=bindparam("lso")))
assert _TXN_INDEX_ORDER == ("log_id", "last", "pid", "first", "aborted", "lso"), _TXN_INDEX_ORDER


def _apply(conn: Connection, log_id: int, h: BatchHeader, record_index: bool) -> None:
    """Replay one batch into its producer's state (no validation)."""
    m = _state_row(conn, log_id, h.producer_id)
    open_txn = m["current_txn_first_offset"] if m is not None else None
    if h.is_control:
        if open_txn is not None and record_index:
            others = run(conn, _FIRST_OPEN_TXN_OF_OTHERS, (log_id, h.producer_id)).fetchone()[0]
            run(conn, _INSERT_TXN_INDEX, (log_id, h.last_offset, h.producer_id, open_txn,
                                          h.control_type == CONTROL_ABORT,
                                          others if others is not None else h.last_offset + 1))
        values = {"producer_epoch": h.producer_epoch, "current_txn_first_offset": None,
                  "coordinator_epoch": 0}
        if m is None or m["producer_epoch"] != h.producer_epoch:
            values["last_sequence"] = NO_SEQUENCE  # a marker of a new epoch: sequences restart
    else:
        values = {"producer_epoch": h.producer_epoch, "last_sequence": h.last_sequence,
                  "last_offset": h.last_offset,
                  "current_txn_first_offset": (open_txn if open_txn is not None else h.base_offset)
                  if h.is_transactional else open_txn}
    values["last_timestamp"] = h.max_timestamp if m is None else max(h.max_timestamp, m["last_timestamp"])
    row_values = {"last_sequence": NO_SEQUENCE, "last_offset": h.last_offset, "coordinator_epoch": -1} \
        if m is None else {k: m[k] for k in ("last_sequence", "last_offset", "coordinator_epoch")}
    row_values.update(values)
    # One prepared statement writes the whole row (insert or replace): a Core update built
    # per call costs more than the append it follows.
    run(conn, _REPLACE_STATE, (log_id, h.producer_id, *(row_values[c] for c in _STATE_VALUE_COLUMNS)))


# Batches are disjoint and ordered, so those ending at or after ``start`` begin at or after
# the last batch that begins at or before it: that bound keeps the scan to the range on the
# primary key (log_id, base_offset) instead of every batch of the log (2.6 ms per round at
# 20,000 batches, i.e. two million records, without it).
_FLOOR = (select(_b.base_offset).where(_b.log_id == bindparam("log_id"), _b.base_offset <= bindparam("start"))
          .order_by(_b.base_offset.desc()).limit(1).scalar_subquery())
_BATCHES_IN_RANGE, _BATCHES_IN_RANGE_ORDER = driver_sql(select(*_HEADER_COLUMNS).where(
    _b.log_id == bindparam("log_id"), _b.base_offset >= func.coalesce(_FLOOR, bindparam("start")),
    _b.base_offset < bindparam("end"), _b.last_offset >= bindparam("start"), _b.last_offset < bindparam("end"))
    .order_by(_b.base_offset))
# param_1 and param_2: the subquery's LIMIT 1 and SQLite's OFFSET 0
assert _BATCHES_IN_RANGE_ORDER == ("log_id", "log_id", "start", "param_1", "param_2", "start", "end", "start",
                                   "end"), _BATCHES_IN_RANGE_ORDER


def batches_in_range(conn: Connection, log_id: int, start: int, end: int) -> list[BatchHeader]:
    """The batch headers whose last record lies in [start, end): what a follower that copied
    those records must apply."""
    return [BatchHeader(*r) for r in run(conn, _BATCHES_IN_RANGE,
                                         (log_id, log_id, start, 1, 0, start, end, start, end))]


def apply_replicated(conn: Connection, log_id: int, headers: Sequence[BatchHeader]) -> None:
    """A follower records the batch headers it copied, and replays them into its state."""
    for h in headers:
        append_batch(conn, log_id, h)


def truncate_and_reload(conn: Connection, log_id: int, offset: int) -> None:
    """After the log was truncated at ``offset``: drop the batches and completed transactions
    at or beyond it and replay the state of the producers they touched from the batches that
    remain (Kafka's ``truncateAndReload``)."""
    touched = set(conn.execute(select(_b.producer_id).where(_b.log_id == log_id, _b.last_offset >= offset)).scalars())
    conn.execute(delete(schema.record_batch).where(_b.log_id == log_id, _b.last_offset >= offset))
    conn.execute(delete(schema.transaction_index).where(schema.transaction_index.c.log_id == log_id,
                                                        schema.transaction_index.c.last_offset >= offset))
    for pid in touched:
        conn.execute(delete(schema.producer_state).where(_s.log_id == log_id, _s.producer_id == pid))
        for r in conn.execute(select(*_HEADER_COLUMNS).where(_b.log_id == log_id, _b.producer_id == pid)
                              .order_by(_b.base_offset)).all():
            _apply(conn, log_id, BatchHeader(*r), record_index=False)


def clear(conn: Connection, log_id: int) -> None:
    """Forget a log's batches, producers and completed transactions (the log restarts empty)."""
    conn.execute(delete(schema.record_batch).where(_b.log_id == log_id))
    conn.execute(delete(schema.producer_state).where(_s.log_id == log_id))
    conn.execute(delete(schema.transaction_index).where(schema.transaction_index.c.log_id == log_id))


# ---------------------------------------------------------------------------- transactions
def validate_marker(entry: ProducerStateEntry | None, producer_id: int, epoch: int) -> None:
    """Kafka's ``appendEndTxnMarker`` check (3.25): a marker older than the producer's epoch
    is refused (the coordinator gives up on it)."""
    if entry is not None and epoch < entry.producer_epoch:
        raise KafkaError(Errors.INVALID_PRODUCER_EPOCH,
                         f"A marker for producer {producer_id} at epoch {epoch} is older than its epoch "
                         f"{entry.producer_epoch}.")


def find_marker(conn: Connection, log_id: int, producer_id: int, epoch: int) -> BatchHeader | None:
    """The control batch already written for (producer id, epoch), if any: markers are
    written at most once per epoch (every end of a transaction bumps the epoch)."""
    row = run(conn, _FIND_MARKER, (log_id, producer_id, epoch, True, 1, 0)).fetchone()
    return BatchHeader(*row) if row is not None else None


_FIND_MARKER, _FIND_MARKER_ORDER = driver_sql(select(*_HEADER_COLUMNS).where(
    _b.log_id == bindparam("log_id"), _b.producer_id == bindparam("pid"), _b.producer_epoch == bindparam("epoch"),
    _b.is_control == bindparam("ctl")).limit(bindparam("n")))
assert _FIND_MARKER_ORDER == ("log_id", "pid", "epoch", "ctl", "n", "param_1"), _FIND_MARKER_ORDER


def first_unstable_offset(conn: Connection, log_id: int, high_watermark: int) -> int | None:
    """Kafka's ``firstUnstableOffset`` (3.29): the first offset of an open transaction, or of a
    completed one whose marker the high watermark has not passed yet."""
    open_first = conn.execute(select(func.min(_s.current_txn_first_offset)).where(_s.log_id == log_id)).scalar()
    t = schema.transaction_index.c
    unreplicated = conn.execute(select(func.min(t.first_offset)).where(
        t.log_id == log_id, t.last_offset >= high_watermark)).scalar()
    candidates = [o for o in (open_first, unreplicated) if o is not None]
    return min(candidates) if candidates else None


def aborted_ranges(conn: Connection, log_id: int, start: int, end: int) -> list[tuple[int, int, int]]:
    """(producer_id, first_offset, last_offset) of aborted transactions overlapping [start, end)
    (Kafka's ``TransactionIndex.collectAbortedTxns``)."""
    t = schema.transaction_index.c
    return [tuple(r) for r in conn.execute(select(t.producer_id, t.first_offset, t.last_offset).where(
        t.log_id == log_id, t.is_aborted.is_(True), t.last_offset >= start, t.first_offset < end))]


def delete_batches_below(conn: Connection, log_id: int, offset: int) -> None:
    """Retention: drop batch headers of deleted records, but keep each producer's last five,
    so producer state (and deduplication) outlives the data (KIP-360)."""
    newer = schema.record_batch.alias("newer")
    newer_count = select(func.count()).select_from(newer).where(
        newer.c.log_id == _b.log_id, newer.c.producer_id == _b.producer_id,
        newer.c.base_offset > _b.base_offset).scalar_subquery()
    conn.execute(delete(schema.record_batch).where(
        _b.log_id == log_id, _b.last_offset < offset, newer_count >= NUM_BATCHES_TO_RETAIN))


def remove_expired_producers(conn: Connection, log_id: int, now_ms: int, expiration_ms: int) -> int:
    """Drop producers idle for ``producer.id.expiration.ms`` with no open transaction (2.19).
    Afterwards their next batch is accepted with any sequence (2.20, a documented limit)."""
    expired = list(conn.execute(select(_s.producer_id).where(
        _s.log_id == log_id, _s.current_txn_first_offset.is_(None),
        _s.last_timestamp <= now_ms - expiration_ms)).scalars())
    for pid in expired:
        conn.execute(delete(schema.producer_state).where(_s.log_id == log_id, _s.producer_id == pid))
        conn.execute(delete(schema.record_batch).where(_b.log_id == log_id, _b.producer_id == pid,
                                                       _b.is_control.is_(False)))
    if expired:
        logger.info("[log_id=%s] expired producers %s", log_id, expired)
    return len(expired)
