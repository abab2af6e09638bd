"""LogManager: the background upkeep of every log on every broker file (Kafka's LogManager
and its cleanup tasks): retention, producer-id expiration, and deleting the logs of deleted
topics. Each step is one write transaction on one broker file, safe to run from any process.
"""
from __future__ import annotations

import logging

from service import log as unified_log
from service import producer_state
from service.clock import Clock
from service.config import Config
from service.controller import Controller
from service.db import Database

logger = logging.getLogger(__name__)


class LogManager:
    def __init__(self, db: Database, controller: Controller, config: Config, clock: Clock) -> None:
        self.db = db
        self.controller = controller
        self.config = config
        self.clock = clock

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

    def remove_expired_producers(self) -> int:
        """Background duty: every replica drops producers idle for producer.id.expiration.ms."""
        now = self.clock.milliseconds()
        removed = 0
        for broker_id in self.controller.broker_ids():
            engine = self.db.broker(broker_id)
            with self.db.read(engine) as conn:
                logs = unified_log.all_logs(conn)
            for row in logs:
                with self.db.write(engine) as conn:
                    removed += producer_state.remove_expired_producers(
                        conn, row.log_id, now, self.config.producer_id_expiration_ms)
        return removed

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
