"""TransactionCoordinator: InitProducerId (and, for transactional ids, the transaction
protocol: see the transactions issue)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from service.producer_id_manager import ProducerIdManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitProducerIdResult:
    producer_id: int
    producer_epoch: int
    transactional_id: str | None = None


class TransactionCoordinator:
    def __init__(self, producer_id_manager: ProducerIdManager) -> None:
        self.producer_id_manager = producer_id_manager

    def handle_init_producer_id(self, transactional_id: str | None = None) -> InitProducerIdResult:
        """InitProducerId without a transactional id: a fresh, cluster-unique producer id at
        epoch 0 (2.1); idempotent producers are never fenced by one another."""
        pid = self.producer_id_manager.generate_producer_id()
        logger.debug("new producer id %s", pid)
        return InitProducerIdResult(pid, 0, None)
