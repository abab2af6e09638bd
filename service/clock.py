"""The clock, injected wherever time matters so tests can move time without sleeping."""
from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock milliseconds and a monotonic clock for waits (Kafka's ``Time``)."""

    def milliseconds(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class MockClock(Clock):
    """A clock that only moves when told to (Kafka's ``MockTime``)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._lock = threading.Lock()

    def milliseconds(self) -> int:
        with self._lock:
            return self._now_ms

    def monotonic(self) -> float:
        with self._lock:
            return self._now_ms / 1000.0

    def sleep(self, seconds: float) -> None:
        self.advance(int(seconds * 1000))

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now_ms += ms
