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
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from service import schema
from service.db import driver_sql
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


def load_entry(conn: Connection, log_id: int, producer_id: int) -> ProducerStateEntry | None:
    row = conn.exec_driver_sql(_SELECT_STATE, (log_id, producer_id)).first()
    if row is None:
        return None
    m = row._mapping
    batches = conn.exec_driver_sql(_SELECT_BATCHES, (log_id, producer_id, m["producer_epoch"], False,
                                                     NUM_BATCHES_TO_RETAIN, 0)).all()
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


def append_batch(conn: Connection, log_id: int, batch: ProducerBatch, first_offset: int, last_offset: int,
           count: int, max_timestamp: int, is_control: bool = False) -> None:
    """Record an appended batch in the producer state (Kafka's ``ProducerAppendInfo.append``
    then ``ProducerStateManager.update``), in the append's transaction. No validation: the
    leader validated before appending; a follower applies what the leader wrote."""
    last_seq = batch.base_sequence if is_control else increment_sequence(batch.base_sequence, count - 1)
    conn.execute(insert(schema.record_batch).values(
        log_id=log_id, base_offset=first_offset, last_offset=last_offset, producer_id=batch.producer_id,
        producer_epoch=batch.producer_epoch, base_sequence=batch.base_sequence, last_sequence=last_seq,
        is_transactional=batch.is_transactional, is_control=is_control, max_timestamp=max_timestamp))
    _apply(conn, log_id, batch.producer_id, batch.producer_epoch, None if is_control else last_seq, last_offset,
           max_timestamp)


def _apply(conn: Connection, log_id: int, producer_id: int, epoch: int, last_seq: int | None, last_offset: int,
           timestamp: int) -> None:
    row = conn.exec_driver_sql(_SELECT_STATE, (log_id, producer_id)).first()
    if row is None:
        conn.execute(insert(schema.producer_state).values(
            log_id=log_id, producer_id=producer_id, producer_epoch=epoch,
            last_sequence=NO_SEQUENCE if last_seq is None else last_seq, last_offset=last_offset,
            last_timestamp=timestamp))
        return
    m = row._mapping
    values = {"producer_epoch": epoch, "last_offset": last_offset, "last_timestamp": max(timestamp, m["last_timestamp"])}
    if last_seq is not None:
        values["last_sequence"] = last_seq
    elif epoch != m["producer_epoch"]:
        values["last_sequence"] = NO_SEQUENCE  # a marker of a new epoch: sequences restart
    conn.execute(update(schema.producer_state).where(_s.log_id == log_id, _s.producer_id == producer_id)
                 .values(**values))


def batches_in_range(conn: Connection, log_id: int, start: int, end: int) -> list:
    """The batch headers whose last record lies in [start, end): what a follower that copied
    those records must apply."""
    return conn.execute(select(schema.record_batch).where(
        _b.log_id == log_id, _b.last_offset >= start, _b.last_offset < end).order_by(_b.base_offset)).all()


def apply_replicated(conn: Connection, log_id: int, rows: list) -> None:
    """A follower records the batch headers it copied, and replays them into its state."""
    for r in rows:
        append_batch(conn, log_id, ProducerBatch(r.producer_id, r.producer_epoch, r.base_sequence, r.is_transactional),
               r.base_offset, r.last_offset, r.last_offset - r.base_offset + 1, r.max_timestamp, r.is_control)


def truncate_and_reload(conn: Connection, log_id: int, offset: int) -> None:
    """After the log was truncated at ``offset``: drop the batches at or beyond it and replay
    the state of the producers they touched from the batches that remain."""
    touched = set(conn.execute(select(_b.producer_id).where(_b.log_id == log_id, _b.last_offset >= offset)).scalars())
    conn.execute(delete(schema.record_batch).where(_b.log_id == log_id, _b.last_offset >= offset))
    for pid in touched:
        last = conn.execute(select(schema.record_batch).where(_b.log_id == log_id, _b.producer_id == pid)
                            .order_by(_b.base_offset.desc()).limit(1)).first()
        conn.execute(delete(schema.producer_state).where(_s.log_id == log_id, _s.producer_id == pid))
        if last is None:
            continue
        if last.is_control:
            data = conn.execute(select(schema.record_batch).where(
                _b.log_id == log_id, _b.producer_id == pid, _b.producer_epoch == last.producer_epoch,
                _b.is_control.is_(False)).order_by(_b.base_offset.desc()).limit(1)).first()
            seq = data.last_sequence if data is not None else NO_SEQUENCE
        else:
            seq = last.last_sequence
        conn.execute(insert(schema.producer_state).values(
            log_id=log_id, producer_id=pid, producer_epoch=last.producer_epoch, last_sequence=seq,
            last_offset=last.last_offset, last_timestamp=last.max_timestamp))


def delete_batches_below(conn: Connection, log_id: int, offset: int) -> None:
    """Retention: drop batch headers of deleted records, but keep each producer's last five,
    so producer state (and deduplication) outlives the data (KIP-360)."""
    newer = schema.record_batch.alias("newer")
    newer_count = select(func.count()).select_from(newer).where(
        newer.c.log_id == _b.log_id, newer.c.producer_id == _b.producer_id,
        newer.c.base_offset > _b.base_offset).scalar_subquery()
    conn.execute(delete(schema.record_batch).where(
        _b.log_id == log_id, _b.last_offset < offset, newer_count >= NUM_BATCHES_TO_RETAIN))


def clear(conn: Connection, log_id: int) -> None:
    conn.execute(delete(schema.record_batch).where(_b.log_id == log_id))
    conn.execute(delete(schema.producer_state).where(_s.log_id == log_id))


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
