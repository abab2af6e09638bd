"""The history recorder: every client operation and every fault as JSON lines.

Each event is one line of ``history.jsonl`` (reliability.md §6.4)::

    {"index": 7, "time": 1234567, "process": "p0", "type": "invoke", "f": "send",
     "value": [["send", "t/0", 41]]}

``invoke`` opens an operation; ``ok``, ``fail`` (definitely did not happen) or ``info``
(indefinite: a timeout, a reset connection, a crash) closes it, from the same process.
The nemesis writes its faults as process ``"nemesis"`` (ignored by the checker), and the run's
seed and fault schedule as f ``"meta"``. Lines are flushed as they are written, so a history
survives a crash of the test process too.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class HistoryRecorder:
    """Thread-safe, append-only history; also kept in memory for the checker."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._events: list[dict] = []
        self._t0 = time.monotonic_ns()

    def _write(self, event: dict) -> dict:
        with self._lock:
            event["index"] = len(self._events)
            event["time"] = time.monotonic_ns() - self._t0
            self._events.append(event)
            self._file.write(json.dumps(event, default=repr) + "\n")
            self._file.flush()
        return event

    def invoke(self, process: Any, f: str, value: Any = None) -> dict:
        """Open an operation; pass the returned event to ``complete``."""
        return self._write({"process": process, "type": "invoke", "f": f, "value": value})

    def complete(self, invocation: dict, type_: str, value: Any = None, error: Any = None, **extra: Any) -> dict:
        """Close ``invocation`` as ``ok``, ``fail`` or ``info``."""
        assert type_ in ("ok", "fail", "info"), type_
        event = {"process": invocation["process"], "type": type_, "f": invocation["f"],
                 "value": invocation["value"] if value is None else value}
        if error is not None:
            event["error"] = error
        event.update(extra)
        return self._write(event)

    def event(self, process: Any, f: str, value: Any = None, type_: str = "info", **extra: Any) -> dict:
        """A one-line event (a fault's start or end, the seed and schedule)."""
        return self._write({"process": process, "type": type_, "f": f, "value": value, **extra})

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
