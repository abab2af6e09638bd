"""ReplicaManager: appends to and reads from partition replicas in the broker files.

Each append is one write transaction on the leader's broker file: the checks that guard it
(the leader epoch and ISR seen by the controller, min.insync.replicas for acks=all), the
records, the log end offset and the high watermark commit together. The controller file is
read before, never written here.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

from service import log as unified_log
from service.clock import Clock
from service.config import Config
from service.controller import Controller, PartitionState, TopicMetadata
from service.db import Database
from service.errors import Errors, KafkaError
from service.log import FetchDataInfo, LogAppendInfo
from service.types import NO_LEADER, Acks, FetchIsolation, Record

logger = logging.getLogger(__name__)


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
        self._acks0_executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # ------------------------------------------------------------------ produce
    def append_records(self, topic: TopicMetadata, batches: Mapping[int, Sequence[Record]], acks: Acks,
                       timeout_ms: int | None = None) -> dict[int, LogAppendInfo | KafkaError]:
        """Kafka's ``appendRecords``: one batch per partition, each appended to its leader in
        its own transaction, then (acks=all) one wait for all of them.

        Returns, per partition, the append info or the error that partition met. With acks=0 the
        appends run after this returns and the result is empty (the caller reports offset -1).
        """
        if acks is Acks.NONE:
            self._executor().submit(self._append_quietly, topic, dict(batches))
            return {}
        results: dict[int, LogAppendInfo | KafkaError] = {}
        waiting: dict[int, tuple[PartitionState, int]] = {}
        for partition_id, records in batches.items():
            try:
                state, info = self.append_to_leader(topic, partition_id, records, acks)
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
                    self._await_high_watermark(state, required, deadline)
                except KafkaError as exc:
                    results[partition_id] = exc
        return results

    def _append_quietly(self, topic: TopicMetadata, batches: dict[int, Sequence[Record]]) -> None:
        # acks=0: nobody hears the outcome, as with Kafka; a failure is only logged.
        for partition_id, records in batches.items():
            try:
                self.append_to_leader(topic, partition_id, records, Acks.NONE)
            except Exception as exc:  # noqa: BLE001 - reported to nobody by design
                logger.info("acks=0 append to %s-%s failed: %s", topic.topic_name, partition_id, exc)

    def _executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._acks0_executor is None:
                self._acks0_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlog-acks0")
            return self._acks0_executor

    def append_to_leader(self, topic: TopicMetadata, partition_id: int, records: Sequence[Record],
                         acks: Acks) -> tuple[PartitionState, LogAppendInfo]:
        """Append one batch to the leader of a partition in one write transaction on its file.

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
        with self.db.write(self.db.broker(leader)) as conn:
            log_state = unified_log.load_or_create(conn, state.topic_id, state.topic_name, partition_id)
            info = unified_log.append_as_leader(
                conn, log_state, records, state.leader_epoch, self.clock.milliseconds(),
                log_append_time=topic.log_config.message_timestamp_type == "LogAppendTime")
            self._maybe_increment_leader_hw(conn, state, log_state._replace(log_end_offset=info.last_offset + 1))
        return state, info

    def _maybe_increment_leader_hw(self, conn, state: PartitionState, log_state: unified_log.LogState) -> int:
        """HW = min LEO over the ISR. Until followers replicate, only a leader-only ISR moves it."""
        if tuple(state.isr) == (state.leader,):
            return unified_log.maybe_increment_high_watermark(conn, log_state, log_state.log_end_offset)
        return log_state.high_watermark

    def _await_high_watermark(self, state: PartitionState, required: int, deadline: float) -> None:
        """Wait, holding no lock, until the leader's high watermark reaches ``required``.

        :raises REQUEST_TIMED_OUT: not reached by ``deadline``; the outcome is unknown.
        """
        delay = 0.001
        while True:
            offsets = self._offsets_of(state.leader, state)
            if offsets.high_watermark >= required:
                return
            if self.clock.monotonic() >= deadline:
                raise KafkaError(Errors.REQUEST_TIMED_OUT)
            self.clock.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _live_leader(self, state: PartitionState) -> int:
        if state.leader == NO_LEADER:
            raise KafkaError(Errors.LEADER_NOT_AVAILABLE,
                             f"Partition {state.topic_name}-{state.partition_id} has no leader.")
        image = self.controller.image()
        if not image.broker(state.leader).online:
            raise KafkaError(Errors.NOT_LEADER_OR_FOLLOWER,
                             f"The leader of {state.topic_name}-{state.partition_id}, broker {state.leader}, is offline.")
        return state.leader

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
            return unified_log.read(conn, log_state, offset, max_bytes)

    def fetch_wait(self, topic: TopicMetadata, partition_id: int, offset: int, max_bytes: int, timeout_ms: int,
                   isolation: FetchIsolation | str = FetchIsolation.HIGH_WATERMARK) -> FetchDataInfo:
        """``fetch``, but wait up to ``timeout_ms`` for a record to become visible (long poll).

        The wait holds no transaction: it watches the leader file's ``data_version`` and reads
        again only when something was committed to it.
        """
        isolation = FetchIsolation(isolation)
        deadline = self.clock.monotonic() + timeout_ms / 1000.0
        while True:
            result = self.fetch(topic, partition_id, offset, max_bytes, isolation)
            if result.records or self.clock.monotonic() >= deadline:
                return result
            engine = self.db.broker(topic.partition(partition_id).leader)
            seen = self.db.data_version(engine)
            while self.db.data_version(engine) == seen and self.clock.monotonic() < deadline:
                self.clock.sleep(0.002)
            topic = self.controller.image().topics.get(topic.topic_name, topic)

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
        # No transactions yet: everything below the high watermark is stable.
        return PartitionOffsets(s.log_start_offset, s.log_end_offset, s.high_watermark, s.high_watermark)

    def replica_offsets(self, state: PartitionState) -> dict[int, PartitionOffsets]:
        """Each replica's own view of its log (for the visibility fields of the API)."""
        return {b: self._offsets_of(b, state) for b in state.replicas}

    # ------------------------------------------------------------------ background duties
    def apply_retention(self) -> int:
        """Retention on every log of every broker: one write transaction per log."""
        image = self.controller.image()
        by_id = {t.topic_id: t for t in image.topics.values()}
        deleted = 0
        now = self.clock.milliseconds()
        for b in image.brokers:
            engine = self.db.broker(b.broker_id)
            with self.db.read(engine) as conn:
                logs = unified_log.all_logs(conn)
            for row in logs:
                topic = by_id.get(row.topic_id)
                if topic is None:
                    continue
                cfg = topic.log_config
                if cfg.retention_ms < 0 and cfg.retention_bytes < 0:
                    continue
                with self.db.write(engine) as conn:
                    state = unified_log.load(conn, row.topic_id, row.partition_id)
                    if state is not None:
                        deleted += unified_log.delete_retained_records(
                            conn, state, cfg.retention_ms, cfg.retention_bytes, now)
        return deleted

    def delete_stray_logs(self) -> int:
        """Drop the logs of deleted topics from every broker file (Kafka deletes them
        asynchronously after the controller removed the topic)."""
        removed = 0
        for broker_id in self.controller.broker_ids():
            engine = self.db.broker(broker_id)
            with self.db.read(engine) as conn:
                logs = unified_log.all_logs(conn)
            # Read the metadata after the logs: a log row is only ever created for a topic that
            # already exists, so a topic missing now was deleted, not created meanwhile.
            image = self.controller.image()
            live = {(t.topic_id, p.partition_id) for t in image.topics.values() for p in t.partitions}
            for row in logs:
                if (row.topic_id, row.partition_id) in live:
                    continue
                with self.db.write(engine) as conn:
                    unified_log.delete_log(conn, row.log_id)
                removed += 1
        return removed
