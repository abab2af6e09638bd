"""Background duties, run by one thread per worker process under a lease in controller.db.

Every duty is an idempotent, transactional step, so any process may run it; the lease only
keeps the processes from doing the same work at once. The holder renews the lease each tick;
when it dies (kill -9), the lease lapses after ``lease.duration.ms`` and another worker's
thread takes it over.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Callable

from sqlalchemy import insert, or_, select, update

from service import schema
from service.clock import Clock
from service.config import Config
from service.db import Database

logger = logging.getLogger(__name__)

LEASE_NAME = "background-duties"


class Lease:
    """A named lease row: ``try_acquire`` takes or renews it in one write transaction."""

    def __init__(self, db: Database, clock: Clock, name: str, duration_ms: int, holder: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.name = name
        self.duration_ms = duration_ms
        self.holder = holder or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def try_acquire(self) -> bool:
        now = self.clock.milliseconds()
        t = schema.lease
        with self.db.write(self.db.controller) as conn:
            row = conn.execute(select(t).where(t.c.name == self.name)).first()
            if row is None:
                conn.execute(insert(t).values(name=self.name, holder=self.holder, expires_ms=now + self.duration_ms))
                return True
            taken = conn.execute(update(t).where(t.c.name == self.name, or_(t.c.holder == self.holder,
                                                                             t.c.expires_ms < now))
                                 .values(holder=self.holder, expires_ms=now + self.duration_ms)).rowcount
            return taken == 1

    def current_holder(self) -> str | None:
        with self.db.read(self.db.controller) as conn:
            return conn.execute(select(schema.lease.c.holder).where(schema.lease.c.name == self.name)).scalar()


class Duty:
    """A step run every ``interval_ms`` by the lease holder."""

    def __init__(self, name: str, interval_ms: int, step: Callable[[], object]) -> None:
        self.name = name
        self.interval_ms = interval_ms
        self.step = step
        self.last_run_ms = 0


class BackgroundDuties:
    def __init__(self, db: Database, config: Config, clock: Clock, duties: list[Duty]) -> None:
        self.config = config
        self.clock = clock
        self.duties = duties
        self.lease = Lease(db, clock, LEASE_NAME, config.lease_duration_ms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One tick: take or renew the lease, then run every duty that is due. True if held."""
        if not self.lease.try_acquire():
            return False
        now = self.clock.milliseconds()
        for duty in self.duties:
            if now - duty.last_run_ms >= duty.interval_ms:
                duty.last_run_ms = now
                try:
                    duty.step()
                except Exception:  # a failed duty must not kill the thread; it runs again next time
                    logger.exception("background duty %s failed", duty.name)
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="dlog-background", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        interval = self.config.background_interval_ms / 1000.0
        while not self._stop.wait(interval):
            try:
                self.run_once()
            except Exception:
                logger.exception("background tick failed")
