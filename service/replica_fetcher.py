"""ReplicaFetcher: one follower copying one partition from its leader, one step at a time.

A step is a sequence of single-file transactions, each safe to repeat or to interleave with
the same step run by another process:

1. find where the follower diverges from the leader (leader epochs, KIP-101/279) and truncate
   the follower there: a write on the follower's file guarded by its LEO;
2. append what the leader has beyond the follower's LEO: a write on the follower's file,
   guarded by the LEO it was read at (a repeated step writes nothing);
3. record the follower's position on the leader and advance the HW: a write on the leader's
   file.

No step holds two files' locks at once; the controller file is only read here (ISR changes
go through ``Controller.alter_partition_isr``).
"""
from __future__ import annotations

import logging
import threading
from typing import NamedTuple

from service import leader_epoch as leader_epoch_cache
from service import log as unified_log
from service import partition as leader_partition
from service import producer_state
from service.clock import Clock
from service.controller import Controller, PartitionState, TopicMetadata
from service.db import Database
from service.thread_pool import LazyThreadPool
from service.types import NO_LEADER, UNDEFINED_EPOCH

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_STEP = 5000


class StepResult(NamedTuple):
    copied: int  # records appended to the follower
    truncated: bool
    follower_leo: int
    high_watermark: int
    raced: bool = False  # another process's step moved this follower first: progress, not ours


class ReplicaFetcher:
    def __init__(self, db: Database, controller: Controller, clock: Clock, replica_lag_time_max_ms: int) -> None:
        self.db = db
        self.controller = controller
        self.clock = clock
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self._steps_pool = LazyThreadPool(4, "dlog-step")  # the followers' steps of a parallel round

    def fetch_step(self, topic: TopicMetadata, state: PartitionState, follower_id: int,
                   max_records: int = MAX_RECORDS_PER_STEP) -> StepResult | None:
        """Run one replication step of ``follower_id`` for ``state``'s partition.

        None when the step cannot run: no leader, or the leader or follower broker is offline
        (a stopped broker neither serves nor fetches).
        """
        results = self.fetch_round(topic, state, [follower_id], max_records)
        return results.get(follower_id)

    def fetch_round(self, topic: TopicMetadata, state: PartitionState, follower_ids: list[int] | None = None,
                    max_records: int = MAX_RECORDS_PER_STEP, parallel: bool = False) -> dict[int, StepResult]:
        """Steps 1 and 2 for each follower, then step 3 once for all of them: one write on the
        leader's file records every follower's position and advances the HW. The leader is
        read once per round, in one snapshot, for all its followers.

        ``parallel``: the followers' steps run at the same time (each on its own file, in a
        thread of this fetcher's small pool), for a round whose caller waits on its latency and
        copies little, such as a transaction marker's; otherwise one after the other, which
        costs less CPU when the steps copy many records."""
        if state.leader == NO_LEADER:
            return {}
        image = self.controller.image()
        if not image.broker(state.leader).online:
            return {}
        if follower_ids is None:
            follower_ids = [b for b in state.replicas if b != state.leader]
        live = [f for f in follower_ids
                if f != state.leader and f in state.replicas and image.broker(f).online]
        if not live:
            return {}
        positions = {f: self._follower_position(state, f) for f in live}
        lstate, followers, plans = self._read_leader(state, positions, max_records)
        results: dict[int, StepResult] = {}
        copied: list[tuple[int, int]] = []
        for follower_id, outcome in self._steps(state, live, positions, lstate, plans, parallel):
            if isinstance(outcome, StepResult):
                results[follower_id] = outcome
                continue
            leo, count = outcome
            known = followers.get(follower_id)
            if count == 0 and (known is None or leo > known.log_end_offset):
                # Another step copied these records and may not have synced them yet.
                self.db.sync_wal(self.db.broker(follower_id))
            results[follower_id] = StepResult(count, False, leo, lstate.high_watermark)
            copied.append((follower_id, leo))
        if lstate.log_id < 0 or not copied:
            return results
        hw = self._record_positions(topic, state, image, (lstate, followers), copied)
        if hw is not None:
            for follower_id, _leo in copied:
                results[follower_id] = results[follower_id]._replace(high_watermark=hw)
        return results

    def _steps(self, state: PartitionState, live: list[int], positions: dict, lstate: unified_log.LogState,
               plans: dict, parallel: bool):
        """(follower id, outcome of ``_step``) for every live follower, in ``live``'s order."""
        if not parallel or len(live) < 2:
            return [(f, self._step(state, f, positions[f], lstate, plans[f])) for f in live]
        futures = [self._steps_pool.submit(self._step, state, f, positions[f], lstate, plans[f]) for f in live[1:]]
        first = self._step(state, live[0], positions[live[0]], lstate, plans[live[0]])
        return [(live[0], first)] + [(f, fut.result()) for f, fut in zip(live[1:], futures)]

    def shut_down(self) -> None:
        """Stop the step pool (its threads give their connections back as they end)."""
        self._steps_pool.shut_down()

    def _follower_position(self, state: PartitionState, follower_id: int):
        """The follower's log state and latest leader epoch (one statement, no transaction);
        its log row is created on first use."""
        engine = self.db.broker(follower_id)
        fstate, f_epoch = unified_log.replica_position(self.db, engine, state.topic_id, state.partition_id)
        if fstate is None:
            with self.db.write(engine) as conn:
                fstate = unified_log.load_or_create(conn, state.topic_id, state.topic_name, state.partition_id)
            f_epoch = None
        return fstate, f_epoch

    def _read_leader(self, state: PartitionState, positions: dict, max_records: int):
        """One read transaction on the leader's file: its log state, the followers' states it
        recorded, and per follower where their histories agree (leader epochs) and what it
        would copy (read once for followers at the same log end offset)."""
        plans: dict[int, tuple] = {}
        followers: dict[int, leader_partition.FollowerState] = {}
        with self.db.read(self.db.broker(state.leader)) as conn:
            lstate = unified_log.load(conn, state.topic_id, state.partition_id)
            if lstate is None:
                lstate = unified_log.LogState(-1, 0, 0, 0, 0)
                return lstate, followers, {f: (UNDEFINED_EPOCH, 0, [], []) for f in positions}
            followers = leader_partition.follower_states(conn, lstate.log_id, state.leader_epoch)
            to_copy: dict[int, tuple[list, list]] = {}
            for follower_id, (fstate, f_epoch) in positions.items():
                if f_epoch is not None:
                    l_epoch, l_end = leader_epoch_cache.end_offset_for(conn, lstate.log_id, f_epoch,
                                                                       lstate.log_end_offset)
                else:
                    l_epoch, l_end = UNDEFINED_EPOCH, lstate.log_end_offset
                begin = fstate.log_end_offset
                if begin not in to_copy:
                    # What step 2 copies, read in the same snapshot (unused if step 1 truncates).
                    rows, batches = [], []
                    if lstate.log_start_offset <= begin < lstate.log_end_offset:
                        rows = unified_log.read_for_follower(conn, lstate, begin, max_records)
                        if rows:
                            batches = producer_state.batches_in_range(conn, lstate.log_id, begin, begin + len(rows))
                    to_copy[begin] = (rows, batches)
                plans[follower_id] = (l_epoch, l_end, *to_copy[begin])
        return lstate, followers, plans

    def _step(self, state: PartitionState, follower_id: int, position, lstate: unified_log.LogState, plan):
        """Steps 1 and 2 for one follower, from what the round read: a StepResult when it
        truncated or raced another step, else (follower LEO, records copied)."""
        follower_engine = self.db.broker(follower_id)
        pid = state.partition_id
        fstate, f_epoch = position
        l_epoch, l_end, rows, batches = plan

        # 1. Divergence: truncate the follower to where its history and the leader's agree.
        target = fstate.log_end_offset
        if f_epoch is not None:
            if l_epoch == UNDEFINED_EPOCH:
                target = min(target, lstate.log_end_offset)
            elif l_epoch == f_epoch:
                target = min(target, l_end)
            else:  # the leader's largest epoch <= ours is older: our own end of that epoch bounds it
                with self.db.read(follower_engine) as conn:
                    _e, own_end = leader_epoch_cache.end_offset_for(conn, fstate.log_id, l_epoch, fstate.log_end_offset)
                target = min(target, l_end, own_end if own_end >= 0 else 0)
        else:
            target = min(target, lstate.log_end_offset)
        if target < fstate.log_end_offset or fstate.log_end_offset < lstate.log_start_offset:
            with self.db.write(follower_engine) as conn:
                current = unified_log.load(conn, state.topic_id, pid)
                if current is None or current.log_end_offset != fstate.log_end_offset:
                    return StepResult(0, False, current.log_end_offset if current else 0, lstate.high_watermark,
                                      raced=True)
                if current.log_end_offset < lstate.log_start_offset:
                    fstate = unified_log.truncate_fully_and_start_at(conn, current, lstate.log_start_offset)
                else:
                    logger.info("%s-%s: broker %s diverges from leader %s (epoch %s) at %s; truncating from %s",
                                state.topic_name, pid, follower_id, state.leader, state.leader_epoch, target,
                                current.log_end_offset)
                    fstate = unified_log.truncate_to(conn, current, target)
            return StepResult(0, True, fstate.log_end_offset, lstate.high_watermark)

        # 2. Copy what the leader has beyond the follower's LEO (read above). The copy commits
        # without waiting for the disk and is synced once the file's lock is released: the
        # fsync then no longer holds up the file's other writers (the followers' copies are
        # two thirds of the durable writes of a replicated produce). Its position is reported
        # only after the sync, so the HW never passes a record that is not on disk.
        follower_leo = fstate.log_end_offset
        if rows or fstate.high_watermark < min(lstate.high_watermark, fstate.log_end_offset):
            with self.db.write(follower_engine, durable=False) as conn:
                current = unified_log.load(conn, state.topic_id, pid)
                if current is None:
                    return StepResult(0, False, 0, lstate.high_watermark, raced=True)
                if current.log_end_offset != fstate.log_end_offset:
                    rows, batches = self._rest_after_race(conn, current, fstate.log_end_offset, rows, batches)
                    if not rows:
                        return StepResult(0, False, current.log_end_offset, lstate.high_watermark, raced=True)
                follower_leo = unified_log.append_as_follower(
                    conn, current, rows, lstate.high_watermark, batches).log_end_offset
            if rows:
                self.db.sync_wal(follower_engine)
        return follower_leo, len(rows)

    @staticmethod
    def _rest_after_race(conn, current: unified_log.LogState, begin: int, rows: list, batches: list):
        """Another process's step moved the follower since this round read it (from ``begin``
        to ``current``'s LEO): what of this round's rows lies beyond the new end, when the
        follower's last record has the leader epoch of this round's record at that offset (the
        same epoch at the same offset: the same history, Kafka's leader-epoch rule); nothing
        otherwise (a truncation, another leader's records). Without it the race loser's
        requests waited for a round more. Runs in the step's write transaction on the follower."""
        skip = current.log_end_offset - begin
        if not 0 < skip < len(rows):
            return [], []
        if unified_log.leader_epoch_at(conn, current, current.log_end_offset - 1) != rows[skip - 1][5]:
            return [], []
        end = current.log_end_offset
        return rows[skip:], [b for b in batches if b.last_offset >= end]

    def _record_positions(self, topic: TopicMetadata, state: PartitionState, image, snapshot,
                          copied: list[tuple[int, int]]) -> int | None:
        """Step 3: the leader records where the followers are and may advance the HW; followers
        that caught up to the HW rejoin the ISR. Returns the HW, or None if nothing was due."""
        lstate, followers = snapshot
        min_isr = min(topic.log_config.min_insync_replicas, topic.replication_factor)
        now = self.clock.milliseconds()
        if not any(self._leader_update_due(state, lstate, followers, f, leo, min_isr, now) for f, leo in copied):
            return None
        joins = []
        # Not waited onto the disk: positions and the HW are recomputed from the replicas'
        # (durable) logs after a power loss, as Kafka recomputes its lazily checkpointed HW.
        with self.db.write(self.db.broker(state.leader), durable=False) as conn:
            current = unified_log.load(conn, state.topic_id, state.partition_id)
            assert current is not None
            leader_epoch_cache.assign(conn, current.log_id, state.leader_epoch, current.log_end_offset)
            known = leader_partition.follower_states(conn, current.log_id, state.leader_epoch)
            for follower_id, leo in copied:
                known[follower_id] = leader_partition.update_follower_fetch_state(
                    conn, current, state, follower_id, leo, lstate.log_end_offset, now, known=known.get(follower_id))
            hw = leader_partition.maybe_increment_leader_hw(conn, current, state, min_isr, known)
            for follower_id, leo in copied:
                if follower_id not in state.isr and leader_partition.may_join_isr(
                        conn, current._replace(high_watermark=hw), state, leo):
                    joins.append(follower_id)
        if joins:
            self.controller.alter_partition_isr(state, [*state.isr, *joins])
        return hw

    def _leader_update_due(self, state: PartitionState, lstate: unified_log.LogState,
                           followers: dict[int, leader_partition.FollowerState], follower_id: int,
                           follower_leo: int, min_isr: int, now: int) -> bool:
        """Whether step 3 would change anything: a write on the leader's file costs an fsync,
        so an idle, caught-up follower only refreshes its caught-up time now and then."""
        known = followers.get(follower_id)
        if known is None or known.log_end_offset != follower_leo:
            return True
        if follower_leo >= lstate.log_end_offset and now - known.last_caught_up_ms > self.replica_lag_time_max_ms // 4:
            return True
        if follower_id not in state.isr and follower_leo >= lstate.high_watermark:
            return True
        if len(state.isr) >= min_isr and lstate.high_watermark < lstate.log_end_offset:
            leos = [followers[b].log_end_offset if b in followers else -1 for b in state.isr if b != state.leader]
            return min(leos, default=lstate.log_end_offset) > lstate.high_watermark
        return False


class RoundDriver:
    """Per partition and process: who runs the replication round now, and a condition the
    others wait on until that round ends (so N waiting produces cause one round, not N)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._round = 0

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire(blocking)

    def __enter__(self) -> "RoundDriver":
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        self._lock.release()
        with self._cond:
            self._round += 1
            self._cond.notify_all()

    def wait_for_round(self, timeout: float) -> None:
        with self._cond:
            seen = self._round
            self._cond.wait_for(lambda: self._round != seen, timeout)


class ReplicaFetcherThread:
    """Per-process thread that runs replication steps for partitions this process appended to.

    Its queue is a hint, not state: losing it (a crash) only delays replication until the
    background duty or a waiting request runs the step.
    """

    def __init__(self, replica_manager) -> None:
        self.replica_manager = replica_manager
        self._pending: set[tuple[str, int]] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dlog-replica-fetcher", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wake(self, topic_name: str, partition_id: int) -> None:
        if self._thread is None:
            return
        with self._cond:
            self._pending.add((topic_name, partition_id))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                batch, self._pending = self._pending, set()
            for topic_name, partition_id in batch:
                try:
                    topic = self.replica_manager.controller.image().topics.get(topic_name)
                    if topic is not None:
                        while self.replica_manager.replicate_partition(topic, topic.partition(partition_id)):
                            pass
                except Exception:  # a failed step is retried by the next wake or the background duty
                    logger.exception("replication of %s-%s failed", topic_name, partition_id)
