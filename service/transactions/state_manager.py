"""TransactionStateManager: TransactionMetadata rows in controller.db.

Every function runs inside a write (or read) transaction on controller.db that the caller
opened, so a check and the transition it guards commit together.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from service import schema
from service.db import driver_sql, run, run_many
from service.transactions.metadata import TransactionMetadata, TransactionState

_t = schema.transaction.c
_p = schema.transaction_partition.c
_o = schema.transaction_offset.c


_SELECT_TXN, _ = driver_sql(select(_t.transactional_id, _t.producer_id, _t.producer_epoch, _t.last_producer_epoch,
                                    _t.timeout_ms, _t.state, _t.start_ms, _t.last_update_ms, _t.next_producer_id,
                                    _t.previous_producer_id).where(_t.transactional_id == bindparam("tid")))
_SELECT_PARTITIONS, _ = driver_sql(select(_p.topic_name, _p.partition_id).where(_p.transactional_id == bindparam("tid")))
_VALUE_COLUMNS = ("producer_id", "producer_epoch", "last_producer_epoch", "timeout_ms", "state", "start_ms",
                  "last_update_ms", "next_producer_id", "previous_producer_id")
_UPDATE_TXN, _UPDATE_ORDER = driver_sql(update(schema.transaction).where(_t.transactional_id == bindparam("tid"))
                                        .values(**{c: bindparam(c) for c in _VALUE_COLUMNS}))
assert set(_UPDATE_ORDER) == {*_VALUE_COLUMNS, "tid"}, _UPDATE_ORDER
_INSERT_PARTITION, _ = driver_sql(insert(schema.transaction_partition).values(
    transactional_id=bindparam("tid"), topic_name=bindparam("topic"), partition_id=bindparam("partition")))
_DELETE_PARTITION, _ = driver_sql(delete(schema.transaction_partition).where(
    _p.transactional_id == bindparam("tid"), _p.topic_name == bindparam("topic"),
    _p.partition_id == bindparam("partition")))


def load(conn: Connection, transactional_id: str) -> TransactionMetadata | None:
    # Prepared statements on the driver connection: this runs before every transactional
    # produce (the implicit AddPartitionsToTxn) and several times per EndTxn.
    row = run(conn, _SELECT_TXN, (transactional_id,)).fetchone()
    if row is None:
        return None
    partitions = frozenset(run(conn, _SELECT_PARTITIONS, (transactional_id,)).fetchall())
    (tid, producer_id, producer_epoch, last_producer_epoch, timeout_ms, state, start_ms, last_update_ms,
     next_producer_id, previous_producer_id) = row
    return TransactionMetadata(tid, producer_id, producer_epoch, last_producer_epoch, timeout_ms,
                               TransactionState(state), start_ms, last_update_ms, partitions, next_producer_id,
                               previous_producer_id)


def store(conn: Connection, meta: TransactionMetadata, previous: TransactionMetadata | None) -> None:
    """Persist ``meta`` (and its partition set) in place of ``previous``."""
    values = {"producer_id": meta.producer_id, "producer_epoch": meta.producer_epoch,
              "last_producer_epoch": meta.last_producer_epoch, "timeout_ms": meta.timeout_ms,
              "state": meta.state.value, "start_ms": meta.start_ms, "last_update_ms": meta.last_update_ms,
              "next_producer_id": meta.next_producer_id, "previous_producer_id": meta.previous_producer_id}
    if previous is None:
        conn.execute(insert(schema.transaction).values(transactional_id=meta.transactional_id, **values))
    else:
        values["tid"] = meta.transactional_id
        run(conn, _UPDATE_TXN, tuple(values[c] for c in _UPDATE_ORDER))
    old = previous.partitions if previous is not None else frozenset()
    removed = old - meta.partitions
    if removed:
        run_many(conn, _DELETE_PARTITION, [(meta.transactional_id, t, p) for t, p in sorted(removed)])
    added = meta.partitions - old
    if added:
        run_many(conn, _INSERT_PARTITION, [(meta.transactional_id, t, p) for t, p in sorted(added)])


def all_transactions(conn: Connection) -> list[TransactionMetadata]:
    ids = conn.execute(select(_t.transactional_id).order_by(_t.transactional_id)).scalars().all()
    return [m for m in (load(conn, i) for i in ids) if m is not None]


def ids_in_states(conn: Connection, states: Iterable[TransactionState]) -> list[str]:
    return list(conn.execute(select(_t.transactional_id).where(
        _t.state.in_([s.value for s in states]))).scalars())


_PENDING_OFFSETS, _ = driver_sql(select(_o.group_id, _o.topic_name, _o.partition_id, _o.offset, _o.metadata,
                                        _o.log_offset).where(_o.transactional_id == bindparam("tid")))
_CLEAR_OFFSETS, _ = driver_sql(delete(schema.transaction_offset).where(_o.transactional_id == bindparam("tid")))


class PendingOffset(NamedTuple):
    group_id: str
    topic_name: str
    partition_id: int
    offset: int
    metadata: str | None
    log_offset: int  # where the TxnOffsetCommit lands in the order of offset commits


def pending_offsets(conn: Connection, transactional_id: str) -> list[PendingOffset]:
    return [PendingOffset(*r) for r in run(conn, _PENDING_OFFSETS, (transactional_id,))]


def put_pending_offsets(conn: Connection, transactional_id: str, group_id: str,
                        offsets: Iterable[tuple[str, int, int, str | None]], position: int) -> None:
    """Hold a TxnOffsetCommit's offsets until the transaction ends; ``position`` is where it
    lands in the order of offset commits (``groups.offsets.append_position``)."""
    for topic_name, partition_id, offset, metadata in offsets:
        conn.execute(delete(schema.transaction_offset).where(
            _o.transactional_id == transactional_id, _o.group_id == group_id, _o.topic_name == topic_name,
            _o.partition_id == partition_id))
        conn.execute(insert(schema.transaction_offset).values(
            transactional_id=transactional_id, group_id=group_id, topic_name=topic_name, partition_id=partition_id,
            offset=offset, metadata=metadata, log_offset=position))


def clear_pending_offsets(conn: Connection, transactional_id: str) -> None:
    run(conn, _CLEAR_OFFSETS, (transactional_id,))
