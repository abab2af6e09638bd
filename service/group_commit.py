"""Group commit: concurrent appends to one partition, from the threads of one process, are
merged into one SQLite write transaction.

Each fsync costs about 0.1 ms here and a write transaction far more in Python; when several
request threads append to the same partition at once, the first becomes the committer and
appends every waiting batch in one transaction, each batch keeping its own offsets, checks
and result (ARCHITECTURE.md section 9). The committer hands the role to the next waiting
thread rather than serving newcomers forever, so no request waits for more than two commits.
Nothing here is shared across processes: SQLite's lock still orders the processes.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable, Sequence


class _Request:
    __slots__ = ("item", "result", "error", "done", "lead", "event")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.event = threading.Event()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _Queue:
    __slots__ = ("lock", "pending", "active")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[_Request] = []
        self.active = False


class GroupCommit:
    def __init__(self) -> None:
        self._queues: dict[Hashable, _Queue] = {}
        self._guard = threading.Lock()

    def submit(self, key: Hashable, item: Any,
               commit: Callable[[Sequence[Any]], Sequence[Any]]) -> Any:
        """Run ``commit`` over ``item`` and whatever other items wait on ``key``, in one call.

        ``commit(items)`` returns one entry per item: its result, or an exception instance for
        an item that failed alone; if ``commit`` raises, every item of the call fails with it.
        """
        q = self._queues.get(key)
        if q is None:
            with self._guard:
                q = self._queues.setdefault(key, _Queue())
        req = _Request(item)
        with q.lock:
            q.pending.append(req)
            lead = not q.active
            q.active = True
        if not lead:
            req.event.wait()
            if not req.lead:
                return req.outcome()
        while True:
            with q.lock:
                batch, q.pending = q.pending, []
            if batch:
                self._run(batch, commit)
            with q.lock:
                if not q.pending:
                    q.active = False
                    break
                if req.done:  # hand the committer role to the next waiting request
                    successor = q.pending[0]
                    successor.lead = True
                    successor.event.set()
                    break
        return req.outcome()

    @staticmethod
    def _run(batch: list[_Request], commit: Callable[[Sequence[Any]], Sequence[Any]]) -> None:
        try:
            results = commit([r.item for r in batch])
        except BaseException as exc:  # the whole transaction failed: every item failed with it
            results = [exc] * len(batch)
        for r, result in zip(batch, results):
            if isinstance(result, BaseException):
                r.error = result
            else:
                r.result = result
            r.done = True
            r.event.set()
