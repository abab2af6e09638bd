"""ReplicaManager: appends to and reads from partition replicas in the broker files.

Each append is one write transaction on the leader's broker file: the checks that guard it
(the leader epoch and ISR seen by the controller, min.insync.replicas for acks=all), the
records, the log end offset and the high watermark commit together. The controller file is
read before, never written here.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from service import log as unified_log
from service import partition as leader_partition
from service.clock import Clock
from service.config import Config
from service.controller import Controller, PartitionState, TopicMetadata
from service.db import Database
from service.errors import Errors, KafkaError
from service.faults import crash_point
from service.group_commit import GroupCommit
from service.log import FetchDataInfo, LogAppendInfo
from service.producer_state import ProducerBatch
from service.replica_fetcher import ReplicaFetcher, ReplicaFetcherThread, RoundDriver
from service.thread_pool import LazyThreadPool
from service.types import NO_LEADER, Acks, FetchIsolation, Record

logger = logging.getLogger(__name__)

_PLAIN = ProducerBatch()


@dataclass(frozen=True)
class PartitionOffsets:
    """What the leader knows of one partition's log: the visibility fields of the API."""

    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    last_stable_offset: int


class ReplicaManager:
    """Routes appends and fetches to the leader replica of a partition (Kafka's ReplicaManager)."""

    def __init__(self, db: Database, controller: Controller, config: Config, clock: Clock) -> None:
        self.db = db
        self.controller = controller
        self.config = config
        self.clock = clock
        self.transaction_coordinator = None  # set by DlogServer (AddPartitionsToTxn before transactional appends)
        self._group_commit = GroupCommit()
        self.fetcher = ReplicaFetcher(db, controller, clock, config.replica_lag_time_max_ms)
        self._fetcher_thread = ReplicaFetcherThread(self)
        self._acks0 = LazyThreadPool(1, "dlog-acks0")  # acks=0 appends, after the answer
        self._drivers_lock = threading.Lock()
        self._drivers: dict[tuple[str, int], RoundDriver] = {}
        # Per partition: the files' data_version after a background round found nothing to
        # copy. A cache only: any commit to those files, or time, makes the round run again.
        self._idle_rounds: dict[tuple[str, int], tuple] = {}

    # ------------------------------------------------------------------ produce
    def append_records(self, topic: TopicMetadata, batches: Mapping[int, Sequence[Record]], acks: Acks,
                       timeout_ms: int | None = None,
                       producers: Mapping[int, ProducerBatch] | None = None) -> dict[int, LogAppendInfo | KafkaError]:
        """Kafka's ``appendRecords``: one batch per partition, each appended to its leader in
        its own transaction, then (acks=all) one wait for all of them.

        ``producers`` gives the producer id, epoch and base sequence of a partition's batch
        when it comes from an idempotent producer. Returns, per partition, the append info
        (``duplicate`` for a recognised retry) or the error that partition met. With acks=0 the
        appends run after this returns and the result is empty (the caller reports offset -1).
        """
        producers = producers or {}
        refused = self._add_partitions_to_txn(topic, producers)
        if refused is not None:
            return {p: refused for p in batches}
        if acks is Acks.NONE:
            self._acks0.submit(self._append_quietly, topic, dict(batches), dict(producers))
            return {}
        results: dict[int, LogAppendInfo | KafkaError] = {}
        waiting: dict[int, tuple[PartitionState, int]] = {}
        for partition_id, records in batches.items():
            try:
                state, info = self.append_to_leader(topic, partition_id, records, acks,
                                                    producers.get(partition_id, _PLAIN))
            except KafkaError as exc:
                results[partition_id] = exc
                continue
            results[partition_id] = info
            if acks is Acks.ALL:
                waiting[partition_id] = (state, info.last_offset + 1)
        if waiting:
            timeout_s = (self.config.request_timeout_ms if timeout_ms is None else timeout_ms) / 1000.0
            deadline = self.clock.monotonic() + timeout_s
            for partition_id, (state, required) in waiting.items():
                try:
                    self._await_high_watermark(topic, state, required, deadline)
                except KafkaError as exc:
                    results[partition_id] = exc
        return results

    def _add_partitions_to_txn(self, topic: TopicMetadata, producers: Mapping[int, ProducerBatch]) -> KafkaError | None:
        """Kafka's AddPartitionsToTxn, implicit: before a transactional append, its partitions
        join the producer's transaction durably (in controller.db). The error if refused."""
        txn = {p: b for p, b in producers.items() if b.is_transactional}
        if not txn:
            return None
        owners = {(b.transactional_id, b.producer_id, b.producer_epoch) for b in txn.values()}
        if len(owners) != 1:
            return KafkaError(Errors.INVALID_PRODUCER_ID_MAPPING,
                              "One produce request may carry transactional records of one producer only.")
        transactional_id, producer_id, producer_epoch = owners.pop()
        try:
            self.transaction_coordinator.add_partitions_to_txn(
                transactional_id, producer_id, producer_epoch, [(topic.topic_name, p) for p in txn])
        except KafkaError as exc:
            return exc
        return None

    def _append_quietly(self, topic: TopicMetadata, batches: dict[int, Sequence[Record]],
                        producers: dict[int, ProducerBatch]) -> None:
        # acks=0: nobody hears the outcome, as with Kafka; a failure is only logged.
        for partition_id, records in batches.items():
            try:
                self.append_to_leader(topic, partition_id, records, Acks.NONE, producers.get(partition_id, _PLAIN))
            except Exception as exc:  # noqa: BLE001 - reported to nobody by design
                logger.info("acks=0 append to %s-%s failed: %s", topic.topic_name, partition_id, exc)

    def append_to_leader(self, topic: TopicMetadata, partition_id: int, records: Sequence[Record],
                         acks: Acks, producer: ProducerBatch = ProducerBatch()) -> tuple[PartitionState, LogAppendInfo]:
        """Append one batch to the leader of a partition in one write transaction on its file;
        an idempotent batch is checked against the producer state inside that transaction.

        :raises UNKNOWN_TOPIC_OR_PARTITION: no such partition.
        :raises LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER: the partition has no live leader.
        :raises MESSAGE_TOO_LARGE: a record exceeds ``max.message.bytes`` (nothing written).
        :raises NOT_ENOUGH_REPLICAS: acks=all and the ISR is smaller than min.insync.replicas
            (nothing written).
        """
        state = topic.partition(partition_id)
        if not records:
            raise KafkaError(Errors.INVALID_RECORD, "A produce request must carry at least one record.", 422)
        limit = topic.log_config.max_message_bytes
        for r in records:
            if r.size > limit:
                raise KafkaError(Errors.MESSAGE_TOO_LARGE,
                                 f"The record is {r.size} bytes, larger than max.message.bytes={limit}.", 413)
        leader = self._live_leader(state)
        min_isr = min(topic.log_config.min_insync_replicas, topic.replication_factor)
        if acks is Acks.ALL and len(state.isr) < min_isr:
            raise KafkaError(Errors.NOT_ENOUGH_REPLICAS,
                             f"The in-sync replicas of {topic.topic_name}-{partition_id} are {list(state.isr)}, "
                             f"fewer than min.insync.replicas={min_isr}; nothing was written.")
        log_append_time = topic.log_config.message_timestamp_type == "LogAppendTime"
        info = self._group_commit.submit(
            (leader, state.topic_id, partition_id, state.leader_epoch), (records, producer),
            lambda items: self._append_batches(state, leader, min_isr, log_append_time, items))
        if info.duplicate:
            return state, info
        crash_point("produce.after_append")
        if len(state.replicas) > 1 and acks is not Acks.ALL:
            # acks=all: the waiting request drives the round itself; waking the fetcher
            # thread too would only race it for the same files.
            self._fetcher_thread.wake(topic.topic_name, partition_id)
        return state, info

    def _append_batches(self, state: PartitionState, leader: int, min_isr: int, log_append_time: bool,
                        items: Sequence[tuple[Sequence[Record], ProducerBatch]]) -> list:
        """Append several batches (of concurrent requests) in one write transaction on the
        leader's file, in order; a batch refused by its producer checks fails alone. Then the
        high watermark moves once for all of them."""
        results: list = []
        with self.db.write(self.db.broker(leader)) as conn:
            log_state = unified_log.load_or_create(conn, state.topic_id, state.topic_name, state.partition_id)
            now = self.clock.milliseconds()
            for records, producer in items:
                try:
                    info = unified_log.append_as_leader(conn, log_state, records, state.leader_epoch, now,
                                                        log_append_time=log_append_time, producer=producer)
                except KafkaError as exc:
                    results.append(exc)
                    continue
                results.append(info)
                if not info.duplicate:
                    log_state = log_state._replace(log_end_offset=info.last_offset + 1)
            followers = leader_partition.ensure_follower_states(conn, log_state, state, now)
            leader_partition.maybe_increment_leader_hw(conn, log_state, state, min_isr, followers)
        return results

    def _await_high_watermark(self, topic: TopicMetadata, state: PartitionState, required: int,
                              deadline: float, parallel: bool = False) -> None:
        """Wait until the leader's high watermark reaches ``required`` (Kafka's DelayedProduce).

        The waiting request holds no lock: it drives the replication step of its own partition
        itself (so it is answered as soon as the followers have the batch), and sleeps briefly
        only when a step made no progress. ``parallel``: its rounds copy to the followers at
        the same time (``ReplicaFetcher.fetch_round``).

        :raises NOT_LEADER_OR_FOLLOWER: leadership moved while waiting (outcome unknown).
        :raises NOT_ENOUGH_REPLICAS_AFTER_APPEND: the HW passed the batch but the ISR is now
            below min.insync.replicas (the records are committed).
        :raises REQUEST_TIMED_OUT: the deadline passed; the outcome is unknown.
        """
        delay = 0.0005
        drove = False
        leader_engine = self.db.broker(state.leader)

        def high_watermark() -> int:
            return unified_log.current_high_watermark(self.db, leader_engine, state.topic_id, state.partition_id)

        while True:
            current = self.controller.image().topics.get(topic.topic_name)
            if current is None or current.topic_id != topic.topic_id:
                raise KafkaError(Errors.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic {topic.topic_name} was deleted while waiting for replication.")
            now_state = current.partition(state.partition_id)
            if now_state.leader != state.leader or now_state.leader_epoch != state.leader_epoch:
                raise KafkaError(Errors.NOT_LEADER_OR_FOLLOWER,
                                 f"Leadership of {topic.topic_name}-{state.partition_id} moved while waiting for "
                                 "replication; the outcome is unknown.")
            if high_watermark() >= required:
                if not drove and len(now_state.replicas) > len(now_state.isr):
                    # Passed without a round of ours (the ISR is just the leader): the
                    # followers outside it still need to catch up.
                    self._fetcher_thread.wake(topic.topic_name, state.partition_id)
                min_isr = min(current.log_config.min_insync_replicas, current.replication_factor)
                if len(now_state.isr) < min_isr:
                    raise KafkaError(Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                return
            if self.clock.monotonic() >= deadline:
                raise KafkaError(Errors.REQUEST_TIMED_OUT)
            progress = self.replicate_partition(current, now_state, parallel)
            drove = True
            if progress:
                delay = 0.0005
            elif high_watermark() < required:
                # Nothing to copy and the HW still short: another process's round holds the
                # followers (or one is stuck); back off. (A round that only recorded positions
                # another process copied may have moved the HW itself: then look at once.)
                self.clock.sleep(delay)
                delay = min(delay * 2, 0.01)

    # ------------------------------------------------------------------ replication
    def replicate_partition(self, topic: TopicMetadata, state: PartitionState, parallel: bool = False) -> bool:
        """One replication round for a partition (every follower copies, then one write on the
        leader records them); True if any file changed. Within a process one thread at a time
        runs a partition's round: other callers wait for it instead of repeating it.
        ``parallel``: the followers copy at the same time (``ReplicaFetcher.fetch_round``)."""
        driver = self._driver(state.topic_id, state.partition_id)
        if not driver.acquire(blocking=False):
            driver.wait_for_round(0.02)
            return True  # another thread ran a round meanwhile: look at the HW again
        try:
            results = self.fetcher.fetch_round(topic, state, parallel=parallel)
        finally:
            driver.release()
        # A step that raced another process's step saw progress too: look again at once
        # rather than back off as if the followers were stuck.
        return any(r.copied or r.truncated or r.raced for r in results.values())

    def _driver(self, topic_id: str, partition_id: int) -> "RoundDriver":
        key = (topic_id, partition_id)
        driver = self._drivers.get(key)
        if driver is None:
            with self._drivers_lock:
                driver = self._drivers.setdefault(key, RoundDriver())
        return driver

    def start_fetcher_thread(self) -> None:
        """Start this process's fetcher thread: it replicates a partition right after this
        process appended to it, as Kafka's followers, long-polling their leader, would."""
        self._fetcher_thread.start()

    def stop_fetcher_thread(self) -> None:
        self._fetcher_thread.stop()
        self.fetcher.shut_down()
        self._acks0.shut_down()  # acks=0 appends already accepted finish first

    def replicate_all(self) -> int:
        """Background duty: replicate every partition until its followers are caught up (or a
        bounded number of steps). Returns the number of records copied."""
        copied = 0
        image = self.controller.image()
        versions = {b.broker_id: (b.online, self.db.data_version(self.db.broker(b.broker_id))) for b in image.brokers}
        now = self.clock.milliseconds()
        refresh_ms = max(1, self.config.replica_lag_time_max_ms // 4)
        for topic in image.topics.values():
            for state in topic.partitions:
                if len(state.replicas) < 2 or state.leader == NO_LEADER:
                    continue
                key = (state.topic_id, state.partition_id)
                signature = (state.leader_epoch, state.isr, tuple(versions.get(b) for b in state.replicas))
                idle = self._idle_rounds.get(key)
                if idle is not None and idle[0] == signature and now - idle[1] < refresh_ms:
                    continue  # nothing was written to these files since a round found nothing to do
                for _ in range(20):
                    with self._driver(state.topic_id, state.partition_id):
                        results = self.fetcher.fetch_round(topic, state)
                    copied += sum(r.copied for r in results.values())
                    if not any(r.copied or r.truncated for r in results.values()):
                        break
                after = tuple((versions[b][0], self.db.data_version(self.db.broker(b))) for b in state.replicas)
                self._idle_rounds[key] = ((state.leader_epoch, state.isr, after), now)
        return copied

    def maybe_shrink_isr(self) -> int:
        """Background duty: drop ISR followers not caught up for replica.lag.time.max.ms, then let
        the HW move on without them. Returns the number of partitions whose ISR shrank.

        A follower on a broker stopped for that long leaves too, even if it was caught up when
        it stopped and nothing was written since (Kafka's lag rule alone keeps such a follower,
        but its controller drops a broker whose session expired, 1.11); otherwise the next
        acks=all produce would wait the lag time out before the ISR shrank.
        """
        shrunk = 0
        now = self.clock.milliseconds()
        image = self.controller.image()
        lag_ms = self.config.replica_lag_time_max_ms
        gone = {b.broker_id for b in image.brokers if not b.online and now - b.status_changed_ms > lag_ms}
        for topic in image.topics.values():
            min_isr = min(topic.log_config.min_insync_replicas, topic.replication_factor)
            for state in topic.partitions:
                if state.leader == NO_LEADER or len(state.isr) <= 1 or not image.broker(state.leader).online:
                    continue
                engine = self.db.broker(state.leader)
                with self.db.write(engine) as conn:
                    log_state = unified_log.load_or_create(conn, state.topic_id, state.topic_name, state.partition_id)
                    lagging = leader_partition.out_of_sync_followers(conn, log_state, state, now, lag_ms)
                lagging = set(lagging) | ((gone & set(state.isr)) - {state.leader})
                if not lagging:
                    continue
                new_isr = [b for b in state.isr if b not in lagging]
                if self.controller.alter_partition_isr(state, new_isr):
                    shrunk += 1
                    new_state = self.controller.image().topic(topic.topic_name).partition(state.partition_id)
                    with self.db.write(engine) as conn:
                        log_state = unified_log.load(conn, state.topic_id, state.partition_id)
                        leader_partition.maybe_increment_leader_hw(conn, log_state, new_state, min_isr)
        return shrunk

    def _live_leader(self, state: PartitionState) -> int:
        if state.leader == NO_LEADER:
            raise KafkaError(Errors.LEADER_NOT_AVAILABLE,
                             f"Partition {state.topic_name}-{state.partition_id} has no leader.")
        image = self.controller.image()
        if not image.broker(state.leader).online:
            raise KafkaError(Errors.NOT_LEADER_OR_FOLLOWER,
                             f"The leader of {state.topic_name}-{state.partition_id}, broker {state.leader}, is offline.")
        return state.leader

    def write_txn_marker(self, topic_name: str, partition_id: int, producer_id: int, producer_epoch: int,
                         control_type: int, timeout_ms: int) -> LogAppendInfo:
        """WriteTxnMarkers for one partition: append the COMMIT or ABORT control record on the
        leader (at most once per producer id and epoch) and wait, as acks=all, until the high
        watermark passes it, so a clean election can never undo it (3.24, 3.40).

        :raises NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, ...: retriable;
            the coordinator tries again.
        :raises INVALID_PRODUCER_EPOCH: the partition saw a newer epoch; the coordinator gives up.
        """
        topic = self.controller.image().topics.get(topic_name)
        if topic is None:
            # A deleted topic has nothing left to mark.
            return LogAppendInfo(-1, -1, (), 0, duplicate=True)
        state = topic.partition(partition_id)
        leader = self._live_leader(state)
        min_isr = min(topic.log_config.min_insync_replicas, topic.replication_factor)
        if len(state.isr) < min_isr:
            raise KafkaError(Errors.NOT_ENOUGH_REPLICAS)
        with self.db.write(self.db.broker(leader)) as conn:
            log_state = unified_log.load_or_create(conn, state.topic_id, state.topic_name, partition_id)
            info = unified_log.append_control_marker(conn, log_state, state.leader_epoch, producer_id,
                                                     producer_epoch, control_type, self.clock.milliseconds())
            if not info.duplicate:
                followers = leader_partition.ensure_follower_states(conn, log_state, state, self.clock.milliseconds())
                leader_partition.maybe_increment_leader_hw(
                    conn, log_state._replace(log_end_offset=info.last_offset + 1), state, min_isr, followers)
        deadline = self.clock.monotonic() + timeout_ms / 1000.0
        # The transaction's commit waits on this round and it copies one record: the
        # followers copy it at the same time.
        self._await_high_watermark(topic, state, info.last_offset + 1, deadline, parallel=True)
        return info

    # ------------------------------------------------------------------ fetch
    def fetch(self, topic: TopicMetadata, partition_id: int, offset: int, max_bytes: int,
              isolation: FetchIsolation = FetchIsolation.HIGH_WATERMARK) -> FetchDataInfo:
        """Read from the leader: records below the high watermark from ``offset``.

        :raises OFFSET_OUT_OF_RANGE: ``offset`` is below the log start or beyond the log end.
        """
        state = topic.partition(partition_id)
        leader = self._live_leader(state)
        with self.db.read(self.db.broker(leader)) as conn:
            log_state = unified_log.load(conn, state.topic_id, partition_id)
            return unified_log.read(conn, log_state, offset, max_bytes,
                                    read_committed=FetchIsolation(isolation) is FetchIsolation.TXN_COMMITTED)

    def fetch_wait(self, topic: TopicMetadata, partition_id: int, offset: int, max_bytes: int, timeout_ms: int,
                   isolation: FetchIsolation | str = FetchIsolation.HIGH_WATERMARK) -> FetchDataInfo:
        """``fetch``, but wait up to ``timeout_ms`` for a record to become visible (long poll).

        When records exist beyond the high watermark, the read first drives the replication
        step of its partition (as a waiting acks=all produce does). The wait holds no
        transaction: it watches the leader file's ``data_version`` and reads again only when
        something was committed to it. Control records (transaction markers) are passed over
        while waiting and returned in front of the data, so the caller's next offset moves
        past them.
        """
        isolation = FetchIsolation(isolation)
        deadline = self.clock.monotonic() + timeout_ms / 1000.0
        skipped: list = []
        while True:
            engine = self.db.broker(topic.partition(partition_id).leader) \
                if topic.partition(partition_id).leader >= 0 else None
            seen = self.db.data_version(engine) if engine is not None else None  # before reading
            result = self.fetch(topic, partition_id, offset, max_bytes, isolation)
            if result.records and not all(r.is_control for r in result.records):
                return replace(result, records=skipped + result.records) if skipped else result
            if result.records:
                skipped += result.records
                offset = result.records[-1].offset + 1
                continue
            if skipped and self.clock.monotonic() >= deadline:
                return replace(result, records=skipped)
            state = topic.partition(partition_id)
            if result.high_watermark < result.log_end_offset and self.replicate_partition(topic, state):
                continue  # the followers had something to copy: the HW may have moved
            if self.clock.monotonic() >= deadline:
                return result
            while self.db.data_version(engine) == seen and self.clock.monotonic() < deadline:
                self.clock.sleep(0.002)
            topic = self.controller.image().topics.get(topic.topic_name, topic)

    def count_records(self, topic: TopicMetadata, partition_id: int, start: int, end: int) -> int:
        """Data records (not transaction markers) of a partition in [start, end), on its leader."""
        state = topic.partition(partition_id)
        if end <= start:
            return 0
        with self.db.read(self.db.broker(self._live_leader(state))) as conn:
            return unified_log.count_data_records(conn, state.topic_id, partition_id, start, end)

    def offset_for_timestamp(self, topic: TopicMetadata, partition_id: int, timestamp: int) -> int:
        """ListOffsets by timestamp on the leader (see ``log.offset_for_timestamp``)."""
        state = topic.partition(partition_id)
        with self.db.read(self.db.broker(self._live_leader(state))) as conn:
            log_state = unified_log.load(conn, state.topic_id, partition_id)
            return 0 if log_state is None else unified_log.offset_for_timestamp(conn, log_state, timestamp)

    def offsets(self, topic: TopicMetadata, partition_id: int) -> PartitionOffsets:
        state = topic.partition(partition_id)
        if state.leader == NO_LEADER:
            raise KafkaError(Errors.LEADER_NOT_AVAILABLE,
                             f"Partition {state.topic_name}-{state.partition_id} has no leader.")
        return self._offsets_of(state.leader, state)

    def _offsets_of(self, broker_id: int, state: PartitionState) -> PartitionOffsets:
        with self.db.read(self.db.broker(broker_id)) as conn:
            s = unified_log.load(conn, state.topic_id, state.partition_id)
            if s is None:
                return PartitionOffsets(0, 0, 0, 0)
            lso = unified_log.last_stable_offset(conn, s)
        return PartitionOffsets(s.log_start_offset, s.log_end_offset, s.high_watermark, lso)

    def replica_offsets(self, state: PartitionState) -> dict[int, PartitionOffsets]:
        """Each replica's own view of its log (for the visibility fields of the API)."""
        return {b: self._offsets_of(b, state) for b in state.replicas}
