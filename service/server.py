"""DlogServer: the domain objects of one process, wired together (Kafka's ``BrokerServer``).

The HTTP layer and the CLI's ``serve`` build one of these and call its parts; nothing here
knows about HTTP.
"""
from __future__ import annotations

import logging

from service.background import BackgroundDuties, Duty
from service.clock import SYSTEM_CLOCK, Clock
from service.config import Config
from service.controller import Controller
from service.db import Database, upgrade
from service.groups.consumer import ConsumerFetcher
from service.groups.coordinator import GroupCoordinator
from service.groups.offsets import OffsetMetadataManager
from service.log_manager import LogManager
from service.producer_id_manager import ProducerIdManager
from service.replica_manager import ReplicaManager
from service.transactions.coordinator import TransactionCoordinator

logger = logging.getLogger(__name__)


class DlogServer:
    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.db = Database(config.data_dir, sync=config.sync, busy_timeout_ms=config.busy_timeout_ms)
        self.controller = Controller(self.db, config, clock)
        self.replica_manager = ReplicaManager(self.db, self.controller, config, clock)
        self.log_manager = LogManager(self.db, self.controller, config, clock)
        self.transaction_coordinator = TransactionCoordinator(self.db, config, clock, ProducerIdManager(self.db),
                                                              self.replica_manager)
        self.replica_manager.transaction_coordinator = self.transaction_coordinator
        self.offset_manager = OffsetMetadataManager(self.db)
        self.group_coordinator = GroupCoordinator(self.db, self.controller, config, clock)
        self.consumer_fetcher = ConsumerFetcher(self.group_coordinator, self.replica_manager, self.offset_manager,
                                                clock)
        self.background = BackgroundDuties(self.db, config, clock, [
            Duty("elect-leaders", 1000, self.controller.elect_leaders),
            Duty("replicate", 0, self.replica_manager.replicate_all),
            Duty("isr-shrink", max(1, config.replica_lag_time_max_ms // 2), self.replica_manager.maybe_shrink_isr),
            Duty("transaction-recovery", 1000, self.transaction_coordinator.complete_prepared_transactions),
            Duty("transaction-timeouts", config.transaction_abort_interval_ms,
                 self.transaction_coordinator.abort_timed_out_transactions),
            Duty("consumer-expiration", 1000, self.group_coordinator.expire_instances),
            Duty("group-metadata-changes", 2000, self.group_coordinator.rebalance_on_metadata_change),
            Duty("retention", config.log_retention_check_interval_ms, self.log_manager.apply_retention),
            Duty("producer-expiration", config.producer_id_expiration_check_interval_ms,
                 self.log_manager.remove_expired_producers),
            Duty("delete-stray-logs", 5000, self.log_manager.delete_stray_logs),
        ])
        self.ready = False

    def start_up(self, migrate: bool = True, background: bool = True) -> None:
        """Migrate every file, create the cluster if new, then start the background thread.

        ``ready`` turns true only when this has finished (``/health/ready``).
        """
        if migrate:
            upgrade(self.db, [])
        self.controller.bootstrap()
        if migrate:
            upgrade(self.db, self.controller.broker_ids())
        # Start-up recovery: finish every transaction a crash left prepared, before ready.
        self.transaction_coordinator.complete_prepared_transactions()
        if background:
            self.background.start()
            self.replica_manager.start_fetcher_thread()
        self.ready = True

    def txn_offset_commit(self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str,
                          offsets: list[tuple[str, int, int, str | None]], generation_id: int | None = None,
                          member_id: str | None = None) -> None:
        """TxnOffsetCommit: the transaction coordinator records the offsets as pending; a given
        generation or member id is checked against the group in the same transaction."""
        check = None
        if generation_id is not None or member_id is not None:
            check = self.group_coordinator.member_check(group_id, generation_id, member_id)
        self.transaction_coordinator.handle_txn_offset_commit(transactional_id, producer_id, producer_epoch,
                                                              group_id, offsets, check)

    def seek_to_edge(self, group_id: str, instance_id: str, partitions: list[tuple[str, int]],
                     beginning: bool) -> None:
        """Seek an instance's partitions to the log start, or to the end it can read (the HW, or
        the LSO for read_committed instances)."""
        member = self.group_coordinator.member(group_id, instance_id)
        image = self.controller.image()
        positions = []
        for topic_name, partition in partitions:
            o = self.replica_manager.offsets(image.topic(topic_name), partition)
            end = o.last_stable_offset if member.isolation_level == "read_committed" else o.high_watermark
            positions.append((topic_name, partition, o.log_start_offset if beginning else end))
        self.group_coordinator.seek(group_id, instance_id, positions)

    def seek_to_timestamps(self, group_id: str, instance_id: str, timestamps: list[tuple[str, int, int]]) -> None:
        """Seek an instance's partitions to the first records at or after each timestamp."""
        self.group_coordinator.member(group_id, instance_id)
        image = self.controller.image()
        self.group_coordinator.seek(group_id, instance_id, [
            (t, p, self.replica_manager.offset_for_timestamp(image.topic(t), p, ts)) for t, p, ts in timestamps])

    def shut_down(self) -> None:
        self.background.stop()
        self.replica_manager.stop_fetcher_thread()
        self.transaction_coordinator.shut_down()
        self.db.dispose()
