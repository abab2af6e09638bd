"""LeaderEpochCache: each replica's map from leader epoch to the first offset written in it.

Kafka keeps it in ``leader-epoch-checkpoint``; here it is the ``leader_epoch`` table of the
broker file, changed in the same transaction as the records it describes. A follower uses
the leader's cache to find where its log diverges (KIP-101, KIP-279).
"""
from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, func, insert, select

from service import schema
from service.db import driver_sql, run
from service.types import UNDEFINED_EPOCH

UNDEFINED_EPOCH_OFFSET = -1
_e = schema.leader_epoch.c

_LATEST, _ = driver_sql(select(func.max(_e.epoch)).where(_e.log_id == bindparam("log_id")))


def latest_epoch(conn: Connection, log_id: int) -> int | None:
    return run(conn, _LATEST, (log_id,)).fetchone()[0]


_ENTRIES, _ = driver_sql(select(_e.epoch, _e.start_offset).where(_e.log_id == bindparam("log_id"))
                         .order_by(_e.epoch))


def entries(conn: Connection, log_id: int) -> list[tuple[int, int]]:
    """(epoch, start_offset) in epoch order."""
    return run(conn, _ENTRIES, (log_id,)).fetchall()


def assign(conn: Connection, log_id: int, epoch: int, start_offset: int, latest: int | None = None) -> None:
    """Record that ``epoch`` starts at ``start_offset`` if it is newer than every cached epoch."""
    if latest is None:
        latest = latest_epoch(conn, log_id)
    if latest is None or epoch > latest:
        conn.execute(insert(schema.leader_epoch).values(log_id=log_id, epoch=epoch, start_offset=start_offset))


def end_offset_for(conn: Connection, log_id: int, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
    """Kafka's ``LeaderEpochFileCache.endOffsetFor``: the largest cached epoch <= requested and
    the offset where it ends (the start of the next epoch, or the LEO for the latest epoch).

    ``(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`` when no cached epoch is <= the requested one.
    """
    cached = entries(conn, log_id)
    if not cached:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if requested_epoch == cached[-1][0]:
        return requested_epoch, log_end_offset
    floor = None
    for i, (epoch, _start) in enumerate(cached):
        if epoch <= requested_epoch:
            floor = i
        else:
            break
    if floor is None:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if floor == len(cached) - 1:
        return cached[floor][0], log_end_offset
    return cached[floor][0], cached[floor + 1][1]


def truncate_from_end(conn: Connection, log_id: int, end_offset: int) -> None:
    """Drop the epochs that start at or after ``end_offset`` (the log was truncated there)."""
    conn.execute(delete(schema.leader_epoch).where(_e.log_id == log_id, _e.start_offset >= end_offset))


def clear(conn: Connection, log_id: int) -> None:
    conn.execute(delete(schema.leader_epoch).where(_e.log_id == log_id))
