"""OffsetMetadataManager: consumer groups' committed offsets in controller.db.

A committed offset is the next offset to read. Offsets sent in a transaction wait in
``transaction_offset`` and become committed offsets only when the transaction commits; while
any wait for a partition, a stable fetch (read_committed consumers, KIP-447) of it answers
UNSTABLE_OFFSET_COMMIT (3.20).
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from sqlalchemy import Connection, delete, insert, select, update

from service import schema
from service.db import Database
from service.errors import Errors, KafkaError

_c = schema.committed_offset.c
_o = schema.transaction_offset.c


class OffsetAndMetadata(NamedTuple):
    offset: int
    metadata: str | None
    commit_ms: int


_l = schema.consumer_offsets_log.c


def append_position(conn: Connection) -> int:
    """Take the next position in the order of offset commits (Kafka: the offset an OffsetCommit
    or TxnOffsetCommit record gets in the __consumer_offsets partition). Runs in the caller's
    write transaction on controller.db, so positions follow the order the commits take effect."""
    end = conn.execute(select(_l.log_end_offset).where(_l.id == 1)).scalar_one()  # seeded by migration c0007
    conn.execute(update(schema.consumer_offsets_log).where(_l.id == 1).values(log_end_offset=end + 1))
    return end


def store_offsets(conn: Connection, group_id: str, offsets: Iterable[tuple[str, int, int, str | None]],
                  now_ms: int) -> None:
    """Write committed offsets (topic, partition, offset, metadata) in the caller's transaction,
    as one commit appended now (one position for all of them)."""
    position = append_position(conn)
    for topic_name, partition_id, offset, metadata in offsets:
        _put(conn, group_id, topic_name, partition_id, offset, metadata, now_ms, position)


def promote_pending_offsets(conn: Connection, group_id: str,
                            offsets: Iterable[tuple[str, int, int, str | None, int]], now_ms: int) -> None:
    """A committed transaction's offsets (topic, partition, offset, metadata, position) become
    the group's committed offsets, each only where the committed offset was appended before it:
    a plain commit made after the TxnOffsetCommit wins (Kafka's
    ``GroupMetadata.completePendingTxnOffsetCommit``, 3.19)."""
    for topic_name, partition_id, offset, metadata, position in offsets:
        # Position 0: offsets held since before commits were ordered (an older dlog); applied
        # as that version did.
        _put(conn, group_id, topic_name, partition_id, offset, metadata, now_ms, position,
             only_over_older=position != 0)


def _put(conn: Connection, group_id: str, topic_name: str, partition_id: int, offset: int, metadata: str | None,
         now_ms: int, position: int, only_over_older: bool = False) -> None:
    """Set one committed offset (insert or update); ``only_over_older``: leave an existing
    offset committed at a later position as it is."""
    key = (_c.group_id == group_id, _c.topic_name == topic_name, _c.partition_id == partition_id)
    stmt = update(schema.committed_offset).where(*key)
    if only_over_older:
        stmt = stmt.where(_c.log_offset < position)
    updated = conn.execute(stmt.values(offset=offset, metadata=metadata, commit_ms=now_ms,
                                       log_offset=position)).rowcount
    if not updated and only_over_older and conn.execute(select(_c.log_offset).where(*key)).first() is not None:
        return  # committed after the transaction's offsets: it stays
    if not updated:
        conn.execute(insert(schema.committed_offset).values(
            group_id=group_id, topic_name=topic_name, partition_id=partition_id, offset=offset,
            metadata=metadata, commit_ms=now_ms, log_offset=position))


def delete_group_offsets(conn: Connection, group_id: str) -> int:
    return conn.execute(delete(schema.committed_offset).where(_c.group_id == group_id)).rowcount


class OffsetMetadataManager:
    def __init__(self, db: Database) -> None:
        self.db = db

    def fetch_offsets(self, group_id: str, partitions: Iterable[tuple[str, int]] | None = None,
                      require_stable: bool = False) -> dict[tuple[str, int], OffsetAndMetadata]:
        """The committed offsets of a group (all of them when ``partitions`` is None).

        :raises UNSTABLE_OFFSET_COMMIT: ``require_stable`` and a transaction holds pending
            offsets for one of the partitions (retriable).
        """
        wanted = None if partitions is None else set(partitions)
        with self.db.read(self.db.controller) as conn:
            if require_stable:
                pending = {(r.topic_name, r.partition_id) for r in conn.execute(
                    select(_o.topic_name, _o.partition_id).where(_o.group_id == group_id))}
                blocked = pending if wanted is None else pending & wanted
                if blocked:
                    t, p = sorted(blocked)[0]
                    raise KafkaError(Errors.UNSTABLE_OFFSET_COMMIT,
                                     f"A transaction holds uncommitted offsets of group {group_id} for {t}-{p}; "
                                     "retry once it ends.")
            rows = conn.execute(select(schema.committed_offset).where(_c.group_id == group_id)).all()
        return {(r.topic_name, r.partition_id): OffsetAndMetadata(r.offset, r.metadata, r.commit_ms)
                for r in rows if wanted is None or (r.topic_name, r.partition_id) in wanted}
