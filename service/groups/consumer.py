"""The poll of a REST consumer instance (Kafka's ``KafkaConsumer.poll`` on the server side).

A poll (``GET .../records``) joins the group's current generation, auto-commits when due,
looks up missing positions (committed offset, else ``auto.offset.reset``), fetches from the
owned partitions, waits up to its timeout for data (long poll), and finally stores the new
positions in controller.db: only for partitions the instance still owns, so a partition a
rebalance took away meanwhile yields nothing to it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from service import schema
from service.clock import Clock
from service.errors import Errors, KafkaError
from service.groups.coordinator import GroupCoordinator, Member
from service.groups.offsets import OffsetMetadataManager
from service.replica_manager import ReplicaManager
from service.types import FetchIsolation, StoredRecord

logger = logging.getLogger(__name__)

_g = schema.consumer_group.c
_m = schema.group_member.c
_a = schema.member_assignment.c


@dataclass(frozen=True)
class ConsumerRecord:
    topic: str
    partition: int
    record: StoredRecord


class ConsumerFetcher:
    def __init__(self, groups: GroupCoordinator, replica_manager: ReplicaManager, offsets: OffsetMetadataManager,
                 clock: Clock) -> None:
        self.groups = groups
        self.replica_manager = replica_manager
        self.offsets = offsets
        self.db = groups.db
        self.clock = clock

    def poll(self, group_id: str, instance_id: str, timeout_ms: int | None, max_bytes: int) -> tuple[Member, list[ConsumerRecord]]:
        """Records for an instance from the partitions it owns, at most ``max_bytes`` (at least
        one record when any is available), waiting up to ``timeout_ms`` for the first.

        :raises OFFSET_OUT_OF_RANGE: a partition has no valid position and auto.offset.reset
            is none.
        """
        member, generation, positions = self._join(group_id, instance_id)
        isolation = FetchIsolation(member.isolation_level)
        wait_ms = member.request_timeout_ms if timeout_ms is None else timeout_ms
        deadline = self.clock.monotonic() + wait_ms / 1000.0
        resolved = self._resolve_positions(member, positions, isolation)
        out: list[ConsumerRecord] = []
        used = 0  # bytes of ``out``, over every pass of the long poll
        min_bytes = max(1, member.fetch_min_bytes)
        while True:
            # Taken before reading, so a commit landing between the read and the wait wakes it.
            seen = self._versions(resolved)
            for (topic_name, partition), position in list(resolved.items()):
                if used >= max_bytes and out:
                    break
                try:
                    fetched = self._fetch(member, topic_name, partition, position, max_bytes - used, isolation)
                except KafkaError as exc:
                    if exc.error in (Errors.LEADER_NOT_AVAILABLE, Errors.NOT_LEADER_OR_FOLLOWER,
                                     Errors.UNKNOWN_TOPIC_OR_PARTITION):
                        continue  # not readable now; try again next poll
                    raise
                if fetched is None:
                    continue
                new_position, records = fetched
                for r in records:
                    if r.is_control:
                        continue
                    size = len(r.key or b"") + len(r.value or b"") + len(r.headers or b"")
                    if out and used + size > max_bytes:
                        new_position = r.offset  # does not fit: the next poll returns it first
                        break
                    out.append(ConsumerRecord(topic_name, partition, r))
                    used += size
                resolved[(topic_name, partition)] = new_position
            # fetch.min.bytes of 1 (or less) means "any record", even one without bytes.
            if (out and (min_bytes == 1 or used >= min_bytes)) or self.clock.monotonic() >= deadline:
                break
            self._wait_for_data(seen, deadline)
        kept = self._store_positions(member, generation, resolved)
        return member, [r for r in out if (r.topic, r.partition) in kept]

    # ------------------------------------------------------------------ steps
    def _join(self, group_id: str, instance_id: str):
        """The member, the group generation it joins, and its positions. A read transaction,
        unless an auto-commit is due; the heartbeat and the generation are written with the
        positions at the end of the poll (one write per poll)."""
        now = self.clock.milliseconds()
        with self.db.read(self.db.controller) as conn:
            member = self.groups._member(conn, group_id, instance_id)
        due = member.auto_commit_enable and now - member.last_auto_commit_ms >= member.auto_commit_interval_ms
        with (self.db.write if due else self.db.read)(self.db.controller) as conn:
            member = self.groups._member(conn, group_id, instance_id)
            generation = conn.execute(select(_g.generation_id).where(_g.group_id == group_id)).scalar_one()
            if due:
                # Kafka's auto-commit: at a poll, the positions the previous polls reached.
                self.groups._commit_positions(conn, member, None, now)
                conn.execute(update(schema.group_member).where(
                    _m.group_id == group_id, _m.instance_id == instance_id).values(last_auto_commit_ms=now))
            positions = {(r.topic_name, r.partition_id): r.position for r in conn.execute(
                select(schema.member_assignment).where(_a.group_id == group_id, _a.instance_id == instance_id))}
        return member, generation, positions

    def _resolve_positions(self, member: Member, positions: dict, isolation: FetchIsolation) -> dict:
        missing = [tp for tp, pos in positions.items() if pos is None]
        resolved = {tp: pos for tp, pos in positions.items() if pos is not None}
        if not missing:
            return resolved
        committed = {}
        for tp in missing:
            try:
                committed.update(self.offsets.fetch_offsets(
                    member.group_id, [tp], require_stable=isolation is FetchIsolation.TXN_COMMITTED))
            except KafkaError as exc:
                if exc.error is Errors.UNSTABLE_OFFSET_COMMIT:
                    continue  # a transaction holds its offset: look again at the next poll (KIP-447)
                raise
            if tp in committed:
                resolved[tp] = committed[tp].offset
            else:
                reset = self._reset(member, tp, isolation)
                if reset is not None:
                    resolved[tp] = reset
        return resolved

    def _reset(self, member: Member, tp: tuple[str, int], isolation: FetchIsolation) -> int | None:
        """auto.offset.reset (4.16): earliest = log start, latest = HW (LSO for read_committed)."""
        topic = self.replica_manager.controller.image().topics.get(tp[0])
        if topic is None:
            return None
        if member.auto_offset_reset == "none":
            raise KafkaError(Errors.OFFSET_OUT_OF_RANGE,
                             f"No valid position for {tp[0]}-{tp[1]} and auto.offset.reset is none; seek first.")
        try:
            o = self.replica_manager.offsets(topic, tp[1])
        except KafkaError:
            return None
        if member.auto_offset_reset == "earliest":
            return o.log_start_offset
        return o.last_stable_offset if isolation is FetchIsolation.TXN_COMMITTED else o.high_watermark

    def _fetch(self, member: Member, topic_name: str, partition: int, position: int, max_bytes: int,
               isolation: FetchIsolation) -> tuple[int, list[StoredRecord]] | None:
        topic = self.replica_manager.controller.image().topics.get(topic_name)
        if topic is None:
            return None
        try:
            data = self.replica_manager.fetch(topic, partition, position, max(1, max_bytes), isolation)
        except KafkaError as exc:
            if exc.error is not Errors.OFFSET_OUT_OF_RANGE:
                raise
            reset = self._reset(member, (topic_name, partition), isolation)
            if reset is None:
                return None
            logger.info("%s of group %s: position %s of %s-%s out of range, reset to %s", member.instance_id,
                        member.group_id, position, topic_name, partition, reset)
            return reset, []
        if not data.records:
            state = topic.partition(partition)
            if data.high_watermark < data.log_end_offset and self.replica_manager.replicate_partition(topic, state):
                # The round may have moved the HW past our position: read again now rather
                # than sleeping until the next write.
                data = self.replica_manager.fetch(topic, partition, position, max(1, max_bytes), isolation)
            if not data.records:
                return position, []
        return data.records[-1].offset + 1, data.records

    def _versions(self, resolved: dict) -> dict[int, int]:
        """The data_version of each leader file the poll reads from."""
        image = self.replica_manager.controller.image()
        db = self.replica_manager.db
        leaders = set()
        for topic_name, partition in resolved:
            topic = image.topics.get(topic_name)
            if topic is not None and 0 <= partition < topic.partitions_count and topic.partition(partition).leader >= 0:
                leaders.add(topic.partition(partition).leader)
        return {b: db.data_version(db.broker(b)) for b in leaders}

    def _wait_for_data(self, seen: dict[int, int], deadline: float) -> None:
        """Sleep until a leader file changed since ``seen`` was taken, or the deadline."""
        if not seen:
            self.clock.sleep(min(0.05, max(0.0, deadline - self.clock.monotonic())))
            return
        db = self.replica_manager.db
        while self.clock.monotonic() < deadline:
            if any(db.data_version(db.broker(b)) != v for b, v in seen.items()):
                return
            self.clock.sleep(0.002)

    def _store_positions(self, member: Member, generation: int, resolved: dict) -> set:
        """Save positions of the partitions the instance still owns; return those partitions."""
        kept = set()
        with self.db.write(self.db.controller) as conn:
            # The heartbeat, and the generation this poll joined (commits are fenced by it).
            conn.execute(update(schema.group_member).where(
                _m.group_id == member.group_id, _m.instance_id == member.instance_id).values(
                last_seen_ms=self.clock.milliseconds(), generation_id=generation))
            for (topic_name, partition), position in resolved.items():
                done = conn.execute(update(schema.member_assignment).where(
                    _a.group_id == member.group_id, _a.instance_id == member.instance_id,
                    _a.topic_name == topic_name, _a.partition_id == partition).values(position=position)).rowcount
                if done:
                    kept.add((topic_name, partition))
            current = conn.execute(select(_g.generation_id).where(_g.group_id == member.group_id)).scalar()
            if current != generation:
                # A rebalance ran during the poll: keep the positions it left to this member, but
                # the member rejoins at its next poll before committing.
                logger.debug("group %s moved to generation %s during a poll", member.group_id, current)
        return kept
