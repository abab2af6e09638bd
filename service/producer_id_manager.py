"""ProducerIdManager: cluster-unique producer ids, allocated in blocks from controller.db.

Kafka's controller hands each broker a block of ids (``ProducerIdsRecord``); here each process
takes a block of ``BLOCK_SIZE`` ids in one write transaction on controller.db and hands them
out from memory. A block is never handed out twice, so an id is never reused in the cluster,
even when a process dies with part of its block unused.
"""
from __future__ import annotations

import threading

from sqlalchemy import insert, select, update

from service import schema
from service.db import Database

BLOCK_SIZE = 1000


class ProducerIdManager:
    def __init__(self, db: Database, block_size: int = BLOCK_SIZE) -> None:
        self.db = db
        self.block_size = block_size
        self._next = 0
        self._end = 0
        self._lock = threading.Lock()

    def generate_producer_id(self) -> int:
        with self._lock:
            if self._next >= self._end:
                self._next, self._end = self._allocate_block()
            pid = self._next
            self._next += 1
            return pid

    def _allocate_block(self) -> tuple[int, int]:
        t = schema.producer_id_block
        with self.db.write(self.db.controller) as conn:
            start = conn.execute(select(t.c.next_producer_id).where(t.c.id == 1)).scalar()
            if start is None:
                start = 0
                conn.execute(insert(t).values(id=1, next_producer_id=self.block_size))
            else:
                conn.execute(update(t).where(t.c.id == 1).values(next_producer_id=start + self.block_size))
        return start, start + self.block_size
