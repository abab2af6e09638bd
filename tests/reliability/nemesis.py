"""The nemesis: faults on a seeded schedule, each recorded in the history, each followed by
``PRAGMA integrity_check`` of every SQLite file (reliability.md §6.2, §3.2).

Faults (``FAULTS``):

* ``kill``: SIGKILL to the whole process group of ``dlog serve`` (master and workers at
  once), integrity check of the quiescent files, restart on the same data directory;
* ``kill-worker``: SIGKILL to one gunicorn worker; the master forks a new one;
* ``pause``: SIGSTOP to the process group, SIGCONT after a while;
* ``pause-worker``: the same for one gunicorn worker (it may hold a file's write lock);
* ``broker``: stop a broker through the API (by default the leader of the first partition of
  the watched topic: "chase the leader"), or start the one stopped before.

The schedule (a list of ``(delay_s, fault, arg)``) is drawn from ``random.Random(seed)`` before
the run and written into the history, so a failing run can be replayed with its seed (the
timing of the clients around it still varies).
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import requests

from tests.e2e.conftest import DlogProcess, integrity_check

from .history import HistoryRecorder

FAULTS = ("kill", "kill-worker", "pause", "pause-worker", "broker")


class IntegrityError(AssertionError):
    pass


class Nemesis:
    def __init__(self, dlog: DlogProcess, history: HistoryRecorder, seed: int, *,
                 faults: tuple[str, ...] = FAULTS, interval: tuple[float, float] = (1.0, 3.0),
                 pause: tuple[float, float] = (0.5, 2.0), watch_topic: str | None = None,
                 max_stopped_brokers: int = 1) -> None:
        self.dlog = dlog
        self.history = history
        self.rng = random.Random(seed)
        self.faults = faults
        self.interval = interval
        self.pause_range = pause
        self.watch_topic = watch_topic
        self.max_stopped = max_stopped_brokers
        self.stopped_brokers: list[int] = []
        self.counts: dict[str, int] = {}
        self.integrity: list[dict[str, str]] = []
        self.recovery_s: list[float] = []
        self.errors: list[str] = []
        self._paused = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ schedule
    def schedule(self, count: int) -> list[tuple[float, str, Any]]:
        """``count`` faults with their delays, drawn from the seed; recorded in the history.
        When ``count`` allows, every kind of fault comes at least once (in a seeded order)."""
        kinds = sorted(set(self.faults))
        first = self.rng.sample(kinds, len(kinds)) if count >= len(kinds) else []
        plan = []
        for i in range(count):
            fault = first[i] if i < len(first) else self.rng.choice(self.faults)
            arg = (round(self.rng.uniform(*self.pause_range), 2) if fault in ("pause", "pause-worker")
                   else self.rng.random())
            plan.append((round(self.rng.uniform(*self.interval), 2), fault, arg))
        self.history.event("nemesis", "meta", {"schedule": plan})
        return plan

    def run(self, plan: list[tuple[float, str, Any]], stop: threading.Event) -> None:
        """Apply ``plan`` (for a background thread); stops early when ``stop`` is set."""
        try:
            for delay, fault, arg in plan:
                if stop.wait(delay):
                    break
                self.assert_alive()
                self.apply(fault, arg)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.resume()

    def apply(self, fault: str, arg: Any = None) -> None:
        {"kill": self.kill, "kill-worker": self.kill_worker, "pause": self.pause,
         "pause-worker": self.pause_worker, "broker": self.bounce_broker}[fault](arg)

    # ------------------------------------------------------------------ faults
    def _record(self, f: str, value: Any = None) -> dict:
        self.counts[f] = self.counts.get(f, 0) + 1
        return self.history.invoke("nemesis", f, value)

    def check_integrity(self, when: str) -> None:
        result = integrity_check(self.dlog.data_dir)
        self.integrity.append(result)
        bad = {k: v for k, v in result.items() if v != "ok"}
        if bad or not result:
            self.history.event("nemesis", "integrity", {"when": when, "result": result})
            raise IntegrityError(f"integrity_check after {when}: {bad or 'no files'}")

    def kill(self, _arg: Any = None) -> None:
        op = self._record("kill")
        self.dlog.kill9()
        self.check_integrity("kill -9")
        started = time.monotonic()
        self.dlog.start()
        self.recovery_s.append(time.monotonic() - started)
        self.history.complete(op, "info", {"restart_s": round(self.recovery_s[-1], 3)})

    def kill_worker(self, arg: Any = None) -> None:
        workers = self.dlog.worker_pids()
        if not workers:
            return
        victim = workers[int((arg or 0) * len(workers)) % len(workers)]
        op = self._record("kill-worker", {"pid": victim})
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.dlog.wait_workers(exclude=[victim])
        self.check_integrity("worker kill")
        self.history.complete(op, "info")

    def pause(self, seconds: Any = None) -> None:
        seconds = float(seconds or 1.0)
        op = self._record("pause", {"seconds": seconds})
        with self._lock:
            os.killpg(self.dlog.pgid, signal.SIGSTOP)
            self._paused = True
        try:
            time.sleep(seconds)
        finally:
            self.resume()
        self.check_integrity("pause")
        self.history.complete(op, "info")

    def pause_worker(self, seconds: Any = None) -> None:
        workers = self.dlog.worker_pids()
        if not workers:
            return
        victim = workers[self.rng.randrange(len(workers))]
        seconds = float(seconds or 1.0)
        op = self._record("pause-worker", {"pid": victim, "seconds": seconds})
        try:
            os.kill(victim, signal.SIGSTOP)
        except ProcessLookupError:
            pass
        try:
            time.sleep(seconds)
        finally:
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.check_integrity("worker pause")
        self.history.complete(op, "info")

    def resume(self) -> None:
        with self._lock:
            if self._paused:
                try:
                    os.killpg(self.dlog.pgid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self._paused = False

    def _admin(self, path: str) -> requests.Response:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.post(f"{self.dlog.url}/v3/clusters/{self.dlog.cluster_id_cached()}{path}", timeout=10)
                if r.status_code < 500:
                    return r
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: no answer")
            time.sleep(0.1)

    def leader_of(self, topic: str, partition: int = 0) -> int | None:
        r = requests.get(f"{self.dlog.url}/v3/clusters/{self.dlog.cluster_id_cached()}/topics/{topic}"
                         f"/partitions/{partition}", timeout=10)
        return r.json().get("leader_id") if r.status_code == 200 else None

    def stop_broker(self, broker_id: int) -> None:
        op = self._record("stop-broker", {"broker": broker_id})
        r = self._admin(f"/brokers/{broker_id}:stop")
        assert r.status_code == 200, r.text
        self.stopped_brokers.append(broker_id)
        self.check_integrity(f"stop of broker {broker_id}")
        self.history.complete(op, "info")

    def start_broker(self, broker_id: int) -> None:
        op = self._record("start-broker", {"broker": broker_id})
        r = self._admin(f"/brokers/{broker_id}:start")
        assert r.status_code == 200, r.text
        if broker_id in self.stopped_brokers:
            self.stopped_brokers.remove(broker_id)
        self.check_integrity(f"start of broker {broker_id}")
        self.history.complete(op, "info")

    def bounce_broker(self, arg: Any = None) -> None:
        """Start the broker stopped last, or stop one (the watched topic's p0 leader)."""
        if len(self.stopped_brokers) >= self.max_stopped:
            self.start_broker(self.stopped_brokers[0])
            return
        target = self.leader_of(self.watch_topic) if self.watch_topic else None
        if target is None:
            live = [b for b in range(self.dlog.brokers) if b not in self.stopped_brokers]
            target = live[int((arg or 0) * len(live)) % len(live)]
        self.stop_broker(target)

    def assert_alive(self) -> None:
        """Between faults the service must be running: an exit the nemesis did not cause (a
        crash, or a signal from outside the test) fails the run at once, with the log's tail."""
        if not self.dlog.running:
            code = self.dlog.proc.returncode if self.dlog.proc is not None else None
            self.history.event("nemesis", "unexpected-exit", {"returncode": code})
            raise AssertionError(f"dlog serve exited on its own (status {code}), not by the nemesis:\n"
                                 f"{self.dlog.log_tail(15)}")

    def join(self, threads: list[threading.Thread], deadline: float) -> None:
        """Wait for client threads until ``deadline``, checking that the service stays up."""
        for t in threads:
            while t.is_alive() and time.monotonic() < deadline:
                t.join(0.5)
                self.assert_alive()

    def heal(self) -> None:
        """End every fault: resume, start the service if it is down, start stopped brokers."""
        self.resume()
        if not self.dlog.running:
            self.dlog.start()
        for b in list(self.stopped_brokers):
            self.start_broker(b)

    def summary(self) -> dict:
        return {"faults": dict(sorted(self.counts.items())), "total": sum(self.counts.values()),
                "integrity_checks": len(self.integrity),
                "max_restart_s": round(max(self.recovery_s), 2) if self.recovery_s else None,
                "errors": self.errors}
