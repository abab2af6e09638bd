"""TransactionStateManager: TransactionMetadata rows in controller.db.

Every function runs inside a write (or read) transaction on controller.db that the caller
opened, so a check and the transition it guards commit together.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from service import schema
from service.transactions.metadata import TransactionMetadata, TransactionState

_t = schema.transaction.c
_p = schema.transaction_partition.c
_o = schema.transaction_offset.c


def load(conn: Connection, transactional_id: str) -> TransactionMetadata | None:
    row = conn.execute(select(schema.transaction).where(_t.transactional_id == transactional_id)).first()
    if row is None:
        return None
    partitions = frozenset((r.topic_name, r.partition_id) for r in conn.execute(
        select(_p.topic_name, _p.partition_id).where(_p.transactional_id == transactional_id)))
    return TransactionMetadata(row.transactional_id, row.producer_id, row.producer_epoch, row.last_producer_epoch,
                               row.timeout_ms, TransactionState(row.state), row.start_ms, row.last_update_ms,
                               partitions, row.next_producer_id, row.previous_producer_id)


def store(conn: Connection, meta: TransactionMetadata, previous: TransactionMetadata | None) -> None:
    """Persist ``meta`` (and its partition set) in place of ``previous``."""
    values = {"producer_id": meta.producer_id, "producer_epoch": meta.producer_epoch,
              "last_producer_epoch": meta.last_producer_epoch, "timeout_ms": meta.timeout_ms,
              "state": meta.state.value, "start_ms": meta.start_ms, "last_update_ms": meta.last_update_ms,
              "next_producer_id": meta.next_producer_id, "previous_producer_id": meta.previous_producer_id}
    if previous is None:
        conn.execute(insert(schema.transaction).values(transactional_id=meta.transactional_id, **values))
    else:
        conn.execute(update(schema.transaction).where(_t.transactional_id == meta.transactional_id).values(**values))
    old = previous.partitions if previous is not None else frozenset()
    added = meta.partitions - old
    removed = old - meta.partitions
    if removed:
        for topic_name, partition_id in removed:
            conn.execute(delete(schema.transaction_partition).where(
                _p.transactional_id == meta.transactional_id, _p.topic_name == topic_name,
                _p.partition_id == partition_id))
    if added:
        conn.execute(insert(schema.transaction_partition), [
            {"transactional_id": meta.transactional_id, "topic_name": t, "partition_id": p} for t, p in sorted(added)])


def all_transactions(conn: Connection) -> list[TransactionMetadata]:
    ids = conn.execute(select(_t.transactional_id).order_by(_t.transactional_id)).scalars().all()
    return [m for m in (load(conn, i) for i in ids) if m is not None]


def ids_in_states(conn: Connection, states: Iterable[TransactionState]) -> list[str]:
    return list(conn.execute(select(_t.transactional_id).where(
        _t.state.in_([s.value for s in states]))).scalars())


def pending_offsets(conn: Connection, transactional_id: str) -> list:
    return conn.execute(select(schema.transaction_offset).where(_o.transactional_id == transactional_id)).all()


def put_pending_offsets(conn: Connection, transactional_id: str, group_id: str,
                        offsets: Iterable[tuple[str, int, int, str | None]]) -> None:
    for topic_name, partition_id, offset, metadata in offsets:
        conn.execute(delete(schema.transaction_offset).where(
            _o.transactional_id == transactional_id, _o.group_id == group_id, _o.topic_name == topic_name,
            _o.partition_id == partition_id))
        conn.execute(insert(schema.transaction_offset).values(
            transactional_id=transactional_id, group_id=group_id, topic_name=topic_name, partition_id=partition_id,
            offset=offset, metadata=metadata))


def clear_pending_offsets(conn: Connection, transactional_id: str) -> None:
    conn.execute(delete(schema.transaction_offset).where(_o.transactional_id == transactional_id))
