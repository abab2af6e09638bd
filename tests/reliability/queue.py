"""The queue workload shared by R1, R3 and R12: idempotent producers (acks=all) and assigned
consumers over one topic while a nemesis applies its seeded schedule; then heal, a final
read-everything phase from offset 0, and the checks.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.e2e.conftest import DlogProcess, server_log_errors

from .conftest import Run
from .nemesis import Nemesis
from .workload import IdempotentProducer, Poller, ValueSource, key_of, settled_end


@dataclass
class QueueResult:
    results: dict
    nemesis: dict
    producers: dict
    pollers: dict
    ends: dict
    dense: dict
    log_errors: list
    unexpected: list = field(default_factory=list)
    acked: int = 0


def run_queue(run: Run, dlog: DlogProcess, topic: str, *, partitions: int = 3, producers: int = 2,
              pollers: int = 1, faults: tuple[str, ...] = ("kill",), fault_count: int = 3,
              interval: tuple[float, float] = (1.0, 2.5), min_acked: int = 0, max_batch: int = 10,
              tail_s: float = 0.5, poll_isolation: str = "read_uncommitted", watch_topic: str | None = None,
              nemesis_kw: dict | None = None, before_final=None, client_timeout: float = 10.0,
              producer_kw: dict | None = None) -> QueueResult:
    """Run the workload; the caller asserts on the returned ``QueueResult``."""
    keys = [key_of(topic, p) for p in range(partitions)]
    values = ValueSource()
    clients = [IdempotentProducer(f"p{i}", run.api(dlog, client_timeout), run.history, topic, list(range(partitions)),
                                  values, run.rng.__class__(run.seed * 31 + i), max_batch=max_batch,
                                  **(producer_kw or {}))
               for i in range(producers)]
    readers = [Poller(f"c{i}", run.api(dlog, client_timeout), run.history, keys, poll_isolation)
               for i in range(pollers)]
    nemesis = Nemesis(dlog, run.history, run.seed, faults=faults, interval=interval,
                      watch_topic=watch_topic or topic, **(nemesis_kw or {}))
    plan = nemesis.schedule(fault_count)
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True, name=c.name) for c in clients]
    threads += [threading.Thread(target=r.run, args=(stop,), daemon=True, name=r.name) for r in readers]
    for t in threads:
        t.start()
    try:
        nemesis.run(plan, threading.Event())
        assert not nemesis.errors, nemesis.errors
        deadline = time.monotonic() + 300
        while sum(c.acked for c in clients) < min_acked and time.monotonic() < deadline:
            time.sleep(0.1)
            nemesis.assert_alive()
        time.sleep(tail_s)
        nemesis.assert_alive()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        nemesis.heal()
    assert not any(t.is_alive() for t in threads), "client threads hang"
    assert not nemesis.errors, nemesis.errors
    if before_final is not None:
        before_final(nemesis)
    # Final phase: a fresh consumer reads every key from offset 0 to its settled end.
    api = run.api(dlog)
    final = Poller("final", api, run.history, keys, poll_isolation, max_bytes=256 * 1024)
    ends: dict[str, int | None] = {}

    def end_of(k: str) -> int | None:
        ends[k] = settled_end(api, k, committed=poll_isolation == "read_committed")
        return ends[k]

    assert final.drain(end_of, timeout=60), f"final reads did not reach the ends: {final.positions} vs {ends}"
    nemesis.check_integrity("the run")
    results = run.check(data_dir=dlog.data_dir)
    # Raw density (G4): a non-transactional topic's offsets are gapless from 0.
    dense = {}
    for k in keys:
        offsets = [o for e in run.history.events() if e.get("process") == "final" and e["type"] == "ok"
                   and e["f"] == "poll" for o, _v in e["value"][0][1].get(k, ())]
        dense[k] = offsets == list(range(len(offsets))) and len(offsets) == ends[k]
    unexpected = [u for c in clients for u in c.unexpected]
    return QueueResult(results, nemesis.summary(), {c.name: {"acked": c.acked, "duplicates_answered":
                                                             c.duplicates_answered, "errors": c.errors}
                                                    for c in clients},
                       {r.name: {"read": r.read, "errors": r.errors} for r in readers}, ends, dense,
                       server_log_errors(dlog), unexpected, sum(c.acked for c in clients))
