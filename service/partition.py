"""Leader-side replica state of one partition (Kafka's ``Partition`` and ``Replica``).

The leader keeps, in its own broker file (``replica_position``), what it knows of each
follower: its log end offset, when it was last caught up, and the leader LEO at its last
fetch. From these it decides the high watermark (only ``maybe_increment_leader_hw`` does)
and which followers fell out of, or may rejoin, the ISR. Every function runs inside a write
transaction its caller opened on the leader's file.
"""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, update

from service import leader_epoch as leader_epoch_cache
from service import log as unified_log
from service import schema
from service.controller import PartitionState
from service.db import driver_sql, run
from service.log import LogState

_pos = schema.replica_position.c
UNKNOWN_OFFSET = -1


class FollowerState(NamedTuple):
    broker_id: int
    log_end_offset: int
    last_caught_up_ms: int
    last_fetch_leader_log_end_offset: int
    last_fetch_ms: int


_SELECT_FOLLOWERS, _FOLLOWERS_ORDER = driver_sql(
    select(_pos.broker_id, _pos.log_end_offset, _pos.last_caught_up_ms, _pos.last_fetch_leader_log_end_offset,
           _pos.last_fetch_ms).where(_pos.log_id == bindparam("log_id"), _pos.leader_epoch == bindparam("epoch")))
assert _FOLLOWERS_ORDER == ("log_id", "epoch")


def follower_states(conn: Connection, log_id: int, leader_epoch: int) -> dict[int, FollowerState]:
    """The followers' states recorded in the current leader epoch (older ones are stale)."""
    return {r[0]: FollowerState(*r) for r in run(conn, _SELECT_FOLLOWERS, (log_id, leader_epoch))}


_UPDATE_POSITION, _UPDATE_ORDER = driver_sql(update(schema.replica_position).where(
    _pos.log_id == bindparam("id"), _pos.broker_id == bindparam("broker")).values(
    leader_epoch=bindparam("epoch"), log_end_offset=bindparam("leo"), last_caught_up_ms=bindparam("caught_up"),
    last_fetch_leader_log_end_offset=bindparam("fetch_leo"), last_fetch_ms=bindparam("fetch_ms")))
assert _UPDATE_ORDER == ("epoch", "leo", "caught_up", "fetch_leo", "fetch_ms", "id", "broker")


def _upsert(conn: Connection, log_id: int, leader_epoch: int, state: FollowerState) -> None:
    params = (leader_epoch, state.log_end_offset, state.last_caught_up_ms, state.last_fetch_leader_log_end_offset,
              state.last_fetch_ms, log_id, state.broker_id)
    if not run(conn, _UPDATE_POSITION, params).rowcount:
        conn.execute(insert(schema.replica_position).values(
            log_id=log_id, broker_id=state.broker_id, leader_epoch=leader_epoch, log_end_offset=state.log_end_offset,
            last_caught_up_ms=state.last_caught_up_ms,
            last_fetch_leader_log_end_offset=state.last_fetch_leader_log_end_offset, last_fetch_ms=state.last_fetch_ms))


def initial_follower_state(broker_id: int, in_sync: bool, now_ms: int) -> FollowerState:
    """Kafka's ``resetReplicaState`` on becoming leader: an ISR member counts as caught up now."""
    return FollowerState(broker_id, UNKNOWN_OFFSET, now_ms if in_sync else 0, 0, 0)


def ensure_follower_states(conn: Connection, log_state: LogState, partition: PartitionState,
                           now_ms: int) -> dict[int, FollowerState]:
    """The followers' states in this leader epoch, starting the lag clock (caught up "now",
    as Kafka's ``makeLeader`` does) of any ISR follower the leader has not seen yet."""
    if len(partition.replicas) < 2:
        return {}
    followers = follower_states(conn, log_state.log_id, partition.leader_epoch)
    for b in partition.replicas:
        if b != partition.leader and b not in followers:
            followers[b] = initial_follower_state(b, b in partition.isr, partition.leader_epoch_start_ms or now_ms)
            _upsert(conn, log_state.log_id, partition.leader_epoch, followers[b])
    return followers


def update_follower_fetch_state(conn: Connection, log_state: LogState, partition: PartitionState,
                                follower_id: int, follower_leo: int, leader_leo_at_fetch: int, now_ms: int,
                                known: FollowerState | None = None) -> FollowerState:
    """Record a follower's position after a fetch (Kafka ``Replica.updateFetchStateOrThrow``).

    lastCaughtUp moves to now if the follower reached the leader's LEO at fetch time, or to
    the previous fetch time if it reached the LEO the leader had then; otherwise it stays.
    """
    if known is None:
        known = follower_states(conn, log_state.log_id, partition.leader_epoch).get(follower_id)
    if known is None:
        known = initial_follower_state(follower_id, follower_id in partition.isr, now_ms)
    if follower_leo >= leader_leo_at_fetch:
        caught_up = now_ms
    elif follower_leo >= known.last_fetch_leader_log_end_offset:
        caught_up = max(known.last_caught_up_ms, known.last_fetch_ms)
    else:
        caught_up = known.last_caught_up_ms
    new = FollowerState(follower_id, follower_leo, caught_up, leader_leo_at_fetch, now_ms)
    _upsert(conn, log_state.log_id, partition.leader_epoch, new)
    return new


def maybe_increment_leader_hw(conn: Connection, log_state: LogState, partition: PartitionState,
                              min_insync_replicas: int, followers: dict[int, FollowerState] | None = None) -> int:
    """The only place that decides the high watermark: min LEO over the ISR, never backwards,
    and not at all while the ISR is smaller than min.insync.replicas (Kafka 3.7, 1.6).
    A follower whose position is unknown in this leader epoch holds the HW where it is."""
    if len(partition.isr) < min_insync_replicas:
        return log_state.high_watermark
    if followers is None:
        followers = follower_states(conn, log_state.log_id, partition.leader_epoch)
    candidate = log_state.log_end_offset
    for b in partition.isr:
        if b == partition.leader:
            continue
        f = followers.get(b)
        if f is None or f.log_end_offset == UNKNOWN_OFFSET:
            return log_state.high_watermark
        candidate = min(candidate, f.log_end_offset)
    return unified_log.maybe_increment_high_watermark(conn, log_state, candidate)


def out_of_sync_followers(conn: Connection, log_state: LogState, partition: PartitionState, now_ms: int,
                          lag_time_max_ms: int) -> list[int]:
    """ISR followers not caught up for longer than ``replica.lag.time.max.ms`` (1.10, 1.11).

    A follower with no recorded state in this epoch starts its lag clock now (the state is
    written, so the clock keeps running across processes and restarts).
    """
    followers = ensure_follower_states(conn, log_state, partition, now_ms)
    lagging = []
    for b in partition.isr:
        if b == partition.leader:
            continue
        f = followers[b]
        caught_up = f.log_end_offset >= log_state.log_end_offset
        if not caught_up and now_ms - f.last_caught_up_ms > lag_time_max_ms:
            lagging.append(b)
    return lagging


def may_join_isr(conn: Connection, log_state: LogState, partition: PartitionState, follower_leo: int) -> bool:
    """Kafka's ``isFollowerInSync``: LEO >= leader HW and >= the leader's epoch start offset (1.12)."""
    if follower_leo < log_state.high_watermark:
        return False
    entries = dict(leader_epoch_cache.entries(conn, log_state.log_id))
    epoch_start = entries.get(partition.leader_epoch, log_state.log_end_offset)
    return follower_leo >= epoch_start
