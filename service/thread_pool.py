"""A small thread pool of one process, started on first use and stopped at shut-down."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class LazyThreadPool:
    """``submit`` starts the threads the first time; ``shut_down`` waits for the work under
    way and lets a later ``submit`` start them again (a server can be started anew)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix=self.name)
                executor = self._executor
        return executor.submit(fn, *args)

    def shut_down(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
