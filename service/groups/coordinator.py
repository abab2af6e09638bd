"""GroupCoordinator: REST Proxy consumer instances as members of consumer groups.

Instances, subscriptions, assignments and positions live in controller.db, so any gunicorn
worker serves any call. A rebalance (an instance joins, leaves or expires; a subscribed topic
gains partitions) runs inside one write transaction: the generation goes up by one and the
range assignor gives every partition to at most one member, so no moment exists at which two
members own a partition. A member learns of a rebalance at its next fetch (Kafka's poll);
until then its offset commits are refused with REBALANCE_IN_PROGRESS, and a partition taken
from it yields no more records to it.
"""
from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Iterable

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from service import schema
from service.clock import Clock
from service.config import Config
from service.controller import Controller
from service.db import Database
from service.errors import CONSUMER_INSTANCE_NOT_FOUND, Errors, KafkaError, RestError
from service.groups import offsets as group_offsets
from service.groups.metadata import GroupState, range_assign, rebalance_states

logger = logging.getLogger(__name__)

_g = schema.consumer_group.c
_m = schema.group_member.c
_a = schema.member_assignment.c

ILLEGAL_STATE = 40903
INSTANCE_EXISTS = 40902


@dataclass(frozen=True)
class Member:
    group_id: str
    instance_id: str
    member_id: str
    client_id: str
    format: str
    auto_offset_reset: str
    auto_commit_enable: bool
    auto_commit_interval_ms: int
    isolation_level: str
    fetch_min_bytes: int
    request_timeout_ms: int
    subscription: tuple[str, ...] | None
    topic_pattern: str | None
    manual_assignment: bool
    generation_id: int
    last_seen_ms: int
    last_auto_commit_ms: int

    @classmethod
    def from_row(cls, r) -> "Member":
        return cls(r.group_id, r.instance_id, r.member_id, r.client_id, r.format, r.auto_offset_reset,
                   bool(r.auto_commit_enable), r.auto_commit_interval_ms, r.isolation_level, r.fetch_min_bytes,
                   r.request_timeout_ms, tuple(orjson.loads(r.subscription)) if r.subscription else None,
                   r.topic_pattern, bool(r.manual_assignment), r.generation_id, r.last_seen_ms,
                   r.last_auto_commit_ms)


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: GroupState
    generation_id: int
    protocol: str
    leader_member_id: str | None
    members: tuple[Member, ...]
    assignments: dict[str, list[tuple[str, int]]]  # instance id -> partitions


class GroupCoordinator:
    def __init__(self, db: Database, controller: Controller, config: Config, clock: Clock) -> None:
        self.db = db
        self.controller = controller
        self.config = config
        self.clock = clock

    # ------------------------------------------------------------------ instances
    def create_instance(self, group_id: str, instance_id: str | None, settings: dict) -> Member:
        """A new consumer instance (REST Proxy ``POST /consumers/{group}``); it joins the group's
        membership when it subscribes.

        :raises RestError 409/40902: an instance of that name exists in the group.
        """
        now = self.clock.milliseconds()
        instance_id = instance_id or f"rest-consumer-{uuid.uuid4()}"
        member_id = f"{settings.get('client_id') or 'dlog-rest'}-{uuid.uuid4()}"
        with self.db.write(self.db.controller) as conn:
            self._ensure_group(conn, group_id, now)
            exists = conn.execute(select(_m.instance_id).where(_m.group_id == group_id,
                                                               _m.instance_id == instance_id)).first()
            if exists:
                raise RestError(409, "Consumer with specified consumer ID already exists in the specified "
                                     "consumer group.", INSTANCE_EXISTS)
            conn.execute(insert(schema.group_member).values(
                group_id=group_id, instance_id=instance_id, member_id=member_id,
                client_id=settings.get("client_id") or "dlog-rest", format=settings["format"],
                auto_offset_reset=settings["auto_offset_reset"], auto_commit_enable=settings["auto_commit_enable"],
                auto_commit_interval_ms=settings["auto_commit_interval_ms"],
                isolation_level=settings["isolation_level"], fetch_min_bytes=settings["fetch_min_bytes"],
                request_timeout_ms=settings["request_timeout_ms"], subscription=None, topic_pattern=None,
                manual_assignment=False, generation_id=0, last_seen_ms=now, last_auto_commit_ms=now,
                created_ms=now))
            return self._member(conn, group_id, instance_id)

    def delete_instance(self, group_id: str, instance_id: str) -> None:
        """Close an instance: auto-commit its positions if enabled, leave the group, rebalance."""
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            self._close_member(conn, member, now)
            if member.subscription is not None or member.topic_pattern is not None:
                self._rebalance(conn, group_id, now)

    def touch(self, conn: Connection, member: Member, now: int) -> None:
        conn.execute(update(schema.group_member).where(_m.group_id == member.group_id,
                                                       _m.instance_id == member.instance_id)
                     .values(last_seen_ms=now))

    def member(self, group_id: str, instance_id: str) -> Member:
        with self.db.read(self.db.controller) as conn:
            return self._member(conn, group_id, instance_id)

    # ------------------------------------------------------------------ subscriptions and assignment
    def subscribe(self, group_id: str, instance_id: str, topics: list[str] | None, pattern: str | None) -> None:
        """Subscribe to topics or a pattern: the instance joins the group, which rebalances.

        :raises RestError 409/40903: the instance has a manual assignment.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            if member.manual_assignment:
                raise RestError(409, "Illegal state: Subscription to topics, partitions and pattern are mutually "
                                     "exclusive.", ILLEGAL_STATE)
            conn.execute(update(schema.group_member).where(_m.group_id == group_id, _m.instance_id == instance_id)
                         .values(subscription=orjson.dumps(sorted(set(topics))).decode() if topics is not None
                                 else None, topic_pattern=pattern, last_seen_ms=now))
            self._rebalance(conn, group_id, now)

    def unsubscribe(self, group_id: str, instance_id: str) -> None:
        """Kafka's ``unsubscribe``: leaves the subscription and also clears a manual assignment."""
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            conn.execute(update(schema.group_member).where(_m.group_id == group_id, _m.instance_id == instance_id)
                         .values(subscription=None, topic_pattern=None, manual_assignment=False, last_seen_ms=now))
            if member.manual_assignment:
                if member.auto_commit_enable:
                    self._commit_positions(conn, member, None, now)
                conn.execute(delete(schema.member_assignment).where(_a.group_id == group_id,
                                                                     _a.instance_id == instance_id))
            elif member.subscription is not None or member.topic_pattern is not None:
                if member.auto_commit_enable:
                    self._commit_positions(conn, member, None, now)
                conn.execute(delete(schema.member_assignment).where(_a.group_id == group_id,
                                                                     _a.instance_id == instance_id))
                self._rebalance(conn, group_id, now)

    def subscription(self, group_id: str, instance_id: str) -> tuple[list[str], str | None]:
        member = self.member(group_id, instance_id)
        return list(member.subscription or ()), member.topic_pattern

    def assign(self, group_id: str, instance_id: str, partitions: list[tuple[str, int]]) -> None:
        """Manual assignment (Kafka's ``assign``): no group membership, no rebalance.

        :raises RestError 409/40903: the instance is subscribed.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            if member.subscription is not None or member.topic_pattern is not None:
                raise RestError(409, "Illegal state: Subscription to topics, partitions and pattern are mutually "
                                     "exclusive.", ILLEGAL_STATE)
            old = {(r.topic_name, r.partition_id): r.position for r in conn.execute(
                select(schema.member_assignment).where(_a.group_id == group_id, _a.instance_id == instance_id))}
            conn.execute(delete(schema.member_assignment).where(_a.group_id == group_id,
                                                                 _a.instance_id == instance_id))
            wanted = sorted(set(partitions))
            if wanted:
                conn.execute(insert(schema.member_assignment), [
                    {"group_id": group_id, "instance_id": instance_id, "topic_name": t, "partition_id": p,
                     "position": old.get((t, p))} for t, p in wanted])
            conn.execute(update(schema.group_member).where(_m.group_id == group_id, _m.instance_id == instance_id)
                         .values(manual_assignment=bool(wanted), last_seen_ms=now))

    def assignment(self, group_id: str, instance_id: str) -> tuple[Member, list[tuple[str, int]], int]:
        """The partitions an instance owns now, its member id and the group generation."""
        with self.db.read(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            parts = [(r.topic_name, r.partition_id) for r in conn.execute(
                select(_a.topic_name, _a.partition_id).where(_a.group_id == group_id, _a.instance_id == instance_id)
                .order_by(_a.topic_name, _a.partition_id))]
            generation = conn.execute(select(_g.generation_id).where(_g.group_id == group_id)).scalar_one()
        return member, parts, generation

    def seek(self, group_id: str, instance_id: str, positions: Iterable[tuple[str, int, int]]) -> None:
        """Set positions (Kafka's ``seek``) of assigned partitions.

        :raises RestError 409/40903: a partition is not assigned to the instance.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            for topic, partition, offset in positions:
                done = conn.execute(update(schema.member_assignment).where(
                    _a.group_id == group_id, _a.instance_id == instance_id, _a.topic_name == topic,
                    _a.partition_id == partition).values(position=offset)).rowcount
                if not done:
                    raise RestError(409, f"Illegal state: No current assignment for partition {topic}-{partition}.",
                                    ILLEGAL_STATE)
            self.touch(conn, member, now)

    # ------------------------------------------------------------------ offsets
    def commit_offsets(self, group_id: str, instance_id: str,
                       offsets: list[tuple[str, int, int, str | None]] | None) -> None:
        """Commit offsets (next offsets to read) for the instance's group; None commits every
        current position. Fenced like Kafka's OffsetCommit (4.11).

        :raises REBALANCE_IN_PROGRESS: the group rebalanced since the instance last fetched.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            member = self._member(conn, group_id, instance_id)
            self._check_generation(conn, member)
            if offsets is None:
                self._commit_positions(conn, member, None, now)
            else:
                group_offsets.store_offsets(conn, group_id, offsets, now)
            self.touch(conn, member, now)

    def reset_offsets(self, group_id: str, offsets: list[tuple[str, int, int, str | None]]) -> None:
        """Admin commit (generation -1, no member, 4.11): only for a group without members.

        :raises RestError 409: the group has members (stop them first).
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            if conn.execute(select(_m.instance_id).where(_m.group_id == group_id).limit(1)).first() is not None:
                raise RestError(409, f"Consumer group {group_id} has members; offsets can only be reset while it "
                                     "is empty.", 409)
            group_offsets.store_offsets(conn, group_id, offsets, now)

    def member_check(self, group_id: str, generation_id: int | None, member_id: str | None):
        """A check for TxnOffsetCommit (4.14), run inside the transaction coordinator's write
        transaction on controller.db: a stale generation or unknown member is fenced."""
        def check(conn: Connection) -> None:
            group = conn.execute(select(schema.consumer_group).where(_g.group_id == group_id)).first()
            if member_id is not None:
                found = group is not None and conn.execute(select(_m.instance_id).where(
                    _m.group_id == group_id, _m.member_id == member_id)).first() is not None
                if not found:
                    raise KafkaError(Errors.UNKNOWN_MEMBER_ID,
                                     f"Member {member_id} is not in group {group_id}: it was fenced.")
            if generation_id is not None and generation_id >= 0:
                if group is None or group.generation_id != generation_id:
                    raise KafkaError(Errors.ILLEGAL_GENERATION,
                                     f"Generation {generation_id} of group {group_id} is stale; the group is at "
                                     f"{group.generation_id if group is not None else 'none'}.")
        return check

    # ------------------------------------------------------------------ describe
    def list_groups(self) -> list[str]:
        """Groups with members or committed offsets (as Kafka lists them)."""
        with self.db.read(self.db.controller) as conn:
            names = set(conn.execute(select(_g.group_id)).scalars())
            names |= set(conn.execute(select(schema.committed_offset.c.group_id).distinct()).scalars())
        return sorted(names)

    def describe_group(self, group_id: str) -> GroupDescription:
        """A group's state, generation, members and assignment.

        :raises GROUP_ID_NOT_FOUND: no such group (no members and no committed offsets).
        """
        with self.db.read(self.db.controller) as conn:
            group = conn.execute(select(schema.consumer_group).where(_g.group_id == group_id)).first()
            members = tuple(Member.from_row(r) for r in conn.execute(
                select(schema.group_member).where(_m.group_id == group_id).order_by(_m.instance_id)))
            assignments: dict[str, list[tuple[str, int]]] = {}
            for r in conn.execute(select(schema.member_assignment).where(_a.group_id == group_id)
                                  .order_by(_a.topic_name, _a.partition_id)):
                assignments.setdefault(r.instance_id, []).append((r.topic_name, r.partition_id))
            has_offsets = conn.execute(select(schema.committed_offset.c.group_id).where(
                schema.committed_offset.c.group_id == group_id).limit(1)).first() is not None
        if group is None and not has_offsets:
            raise KafkaError(Errors.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.", 40405)
        if group is None:
            return GroupDescription(group_id, GroupState.EMPTY, 0, "range", None, (), {})
        return GroupDescription(group_id, GroupState(group.state), group.generation_id, group.protocol,
                                group.leader_member_id, members, assignments)

    def delete_group(self, group_id: str) -> None:
        """Delete an empty group and its committed offsets (Kafka's DeleteGroups).

        :raises GROUP_ID_NOT_FOUND: no such group. A group with members is refused (409).
        """
        with self.db.write(self.db.controller) as conn:
            members = conn.execute(select(_m.instance_id).where(_m.group_id == group_id).limit(1)).first()
            if members is not None:
                raise RestError(409, f"Consumer group {group_id} has members; it must be empty to be deleted.", 409)
            found = conn.execute(delete(schema.consumer_group).where(_g.group_id == group_id)).rowcount
            found += group_offsets.delete_group_offsets(conn, group_id)
            if not found:
                raise KafkaError(Errors.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.", 40405)

    # ------------------------------------------------------------------ duties
    def expire_instances(self) -> int:
        """Close instances idle longer than consumer.instance.timeout.ms, then rebalance.

        Closed as ``delete_instance`` closes them: the REST Proxy's expiration closes the
        Kafka consumer, whose close() auto-commits when enabled."""
        now = self.clock.milliseconds()
        cutoff = now - self.config.consumer_instance_timeout_ms
        with self.db.write(self.db.controller) as conn:
            expired = [Member.from_row(r) for r in conn.execute(select(schema.group_member).where(
                _m.last_seen_ms < cutoff))]
            for member in expired:
                logger.info("consumer instance %s of group %s expired", member.instance_id, member.group_id)
                self._close_member(conn, member, now)
            for group_id in {m.group_id for m in expired}:
                self._rebalance(conn, group_id, now)
        return len(expired)

    def rebalance_on_metadata_change(self) -> int:
        """Rebalance groups whose subscribed topics changed (partitions added, a topic matching a
        pattern created or deleted) since their last rebalance."""
        changed = 0
        with self.db.read(self.db.controller) as conn:
            groups = [r.group_id for r in conn.execute(select(schema.consumer_group.c.group_id).where(
                _g.state == GroupState.STABLE.value))]
        for group_id in groups:
            now = self.clock.milliseconds()
            with self.db.write(self.db.controller) as conn:
                wanted = self._compute_assignment(conn, group_id)
                current: dict[str, set] = {}
                for r in conn.execute(select(schema.member_assignment).join(
                        schema.group_member, (_m.group_id == _a.group_id) & (_m.instance_id == _a.instance_id))
                        .where(_a.group_id == group_id, _m.manual_assignment.is_(False))):
                    current.setdefault(r.instance_id, set()).add((r.topic_name, r.partition_id))
                if any(set(parts) != current.get(i, set()) for i, parts in wanted.items()):
                    self._rebalance(conn, group_id, now)
                    changed += 1
        return changed

    # ------------------------------------------------------------------ rebalance
    def _compute_assignment(self, conn: Connection, group_id: str) -> dict[str, list[tuple[str, int]]]:
        members = [Member.from_row(r) for r in conn.execute(select(schema.group_member).where(
            _m.group_id == group_id, _m.manual_assignment.is_(False)))]
        topics = {r.topic_name: r.partitions_count for r in conn.execute(
            select(schema.topic.c.topic_name, schema.topic.c.partitions_count))}
        subscriptions: dict[str, list[str]] = {}
        by_member_id = {}
        for m in members:
            if m.subscription is not None:
                wanted = [t for t in m.subscription if t in topics]
            elif m.topic_pattern is not None:
                pattern = re.compile(m.topic_pattern)
                wanted = [t for t in topics if pattern.fullmatch(t)]
            else:
                continue
            subscriptions[m.member_id] = wanted
            by_member_id[m.member_id] = m.instance_id
        assigned = range_assign(subscriptions, topics)
        return {by_member_id[mid]: parts for mid, parts in assigned.items()}

    def _rebalance(self, conn: Connection, group_id: str, now: int) -> None:
        """One whole rebalance in the caller's transaction: generation + 1, new assignment.
        Positions of partitions a member keeps stay; partitions it loses are committed first
        when it auto-commits (as Kafka's consumer does on revocation)."""
        group = conn.execute(select(schema.consumer_group).where(_g.group_id == group_id)).first()
        wanted = self._compute_assignment(conn, group_id)
        state = rebalance_states(GroupState(group.state), bool(wanted))
        members = {r.instance_id: Member.from_row(r) for r in conn.execute(
            select(schema.group_member).where(_m.group_id == group_id, _m.manual_assignment.is_(False)))}
        for instance_id, member in members.items():
            keep = set(wanted.get(instance_id, []))
            rows = conn.execute(select(schema.member_assignment).where(
                _a.group_id == group_id, _a.instance_id == instance_id)).all()
            revoked = [(r.topic_name, r.partition_id) for r in rows if (r.topic_name, r.partition_id) not in keep]
            if revoked and member.auto_commit_enable:
                self._commit_positions(conn, member, set(revoked), now)
            for topic, partition in revoked:
                conn.execute(delete(schema.member_assignment).where(
                    _a.group_id == group_id, _a.instance_id == instance_id, _a.topic_name == topic,
                    _a.partition_id == partition))
            have = {(r.topic_name, r.partition_id) for r in rows}
            new = sorted(keep - have)
            if new:
                conn.execute(insert(schema.member_assignment), [
                    {"group_id": group_id, "instance_id": instance_id, "topic_name": t, "partition_id": p,
                     "position": None} for t, p in new])
        leader = min((members[i].member_id for i in wanted if i in members), default=None)
        conn.execute(update(schema.consumer_group).where(_g.group_id == group_id).values(
            generation_id=group.generation_id + 1, state=state.value, leader_member_id=leader,
            state_changed_ms=now))
        logger.info("group %s rebalanced to generation %s: %s", group_id, group.generation_id + 1,
                    {i: len(p) for i, p in wanted.items()})

    # ------------------------------------------------------------------ helpers
    def _ensure_group(self, conn: Connection, group_id: str, now: int) -> None:
        if conn.execute(select(_g.group_id).where(_g.group_id == group_id)).first() is None:
            conn.execute(insert(schema.consumer_group).values(group_id=group_id, generation_id=0,
                                                              state=GroupState.EMPTY.value, state_changed_ms=now))

    @staticmethod
    def _member(conn: Connection, group_id: str, instance_id: str) -> Member:
        row = conn.execute(select(schema.group_member).where(_m.group_id == group_id,
                                                             _m.instance_id == instance_id)).first()
        if row is None:
            raise RestError(404, "Consumer instance not found.", CONSUMER_INSTANCE_NOT_FOUND)
        return Member.from_row(row)

    def _close_member(self, conn: Connection, member: Member, now: int) -> None:
        """Kafka's consumer ``close()``: commit the positions if auto-commit is on, then leave
        (the caller rebalances)."""
        if member.auto_commit_enable:
            self._commit_positions(conn, member, None, now)
        self._remove_member(conn, member)

    @staticmethod
    def _remove_member(conn: Connection, member: Member) -> None:
        conn.execute(delete(schema.member_assignment).where(_a.group_id == member.group_id,
                                                             _a.instance_id == member.instance_id))
        conn.execute(delete(schema.group_member).where(_m.group_id == member.group_id,
                                                       _m.instance_id == member.instance_id))

    @staticmethod
    def _check_generation(conn: Connection, member: Member) -> None:
        if member.manual_assignment or (member.subscription is None and member.topic_pattern is None):
            return  # not a group-managed member: commits are not fenced by generation (4.11)
        generation = conn.execute(select(_g.generation_id).where(_g.group_id == member.group_id)).scalar_one()
        if generation != member.generation_id:
            raise KafkaError(Errors.REBALANCE_IN_PROGRESS,
                             f"Group {member.group_id} rebalanced to generation {generation}; fetch records to "
                             "rejoin, then commit again.")

    @staticmethod
    def _commit_positions(conn: Connection, member: Member, only: set | None, now: int) -> None:
        rows = conn.execute(select(schema.member_assignment).where(
            _a.group_id == member.group_id, _a.instance_id == member.instance_id, _a.position.is_not(None))).all()
        offsets = [(r.topic_name, r.partition_id, r.position, None) for r in rows
                   if only is None or (r.topic_name, r.partition_id) in only]
        if offsets:
            group_offsets.store_offsets(conn, member.group_id, offsets, now)
