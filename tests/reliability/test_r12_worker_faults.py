"""R12: gunicorn concurrency and worker faults (reliability.md §6.3 R12, §7.3).

2 workers x 4 threads serve 16 concurrent idempotent producers (acks=all) on 3 partitions,
while the nemesis SIGKILLs single workers (the master forks new ones) and SIGSTOPs one for a
while (it may hold a broker file's write lock). Requests in flight on a killed worker end
with a reset connection: they are ``info`` and are retried with the same sequences.

Oracle: no response is a 5xx (not even 503/504) or says "database is locked"; the service
log has no error but gunicorn's own notice of the kill; the checker finds no duplicate, no
lost or unseen value, no inconsistent offsets and no non-monotonic send (sequence checks are
serialised across processes inside SQLite transactions); no OUT_OF_ORDER_SEQUENCE_NUMBER.
"""
from __future__ import annotations

import pytest

from .queue import run_queue

ALLOWED_LOG = ("was sent SIGKILL",)


def _r12(run, kills: int, min_acked: int) -> None:
    dlog = run.service(workers=2, threads=4).start()
    dlog.create_topic("r12", partitions=3, replication_factor=3)
    r = run_queue(run, dlog, "r12", producers=16, pollers=1, faults=("kill-worker",) * 4 + ("pause-worker",),
                  fault_count=kills, interval=(0.3, 1.0), min_acked=min_acked, max_batch=5, client_timeout=60,
                  producer_kw={"timeout_ms": 30000}, nemesis_kw={"pause": (0.5, 2.0)})
    stats = run.stats.summary()
    run.report(acked=r.acked, nemesis=r.nemesis, statuses=stats["statuses"], ends=r.ends,
               duplicates_answered=sum(p["duplicates_answered"] for p in r.producers.values()))
    run.assert_valid(r.results)
    assert all(r.dense.values()), f"offsets not dense from 0: {r.dense} ends {r.ends}"
    assert stats["five_xx_count"] == 0, stats["five_xx"]
    assert stats["bad"] == [], stats["bad"]
    assert r.unexpected == [], r.unexpected[:10]
    assert [line for line in r.log_errors if not any(a in line for a in ALLOWED_LOG)] == [], r.log_errors[:10]
    assert r.nemesis["faults"].get("kill-worker", 0) >= 1


def test_r12_worker_kills_small(run):
    """PR size: 8 worker faults (kills, and a pause) under 16 producers."""
    _r12(run, kills=8, min_acked=2000)


@pytest.mark.slow
def test_r12_worker_kills_full(run):
    """Full size: 60 worker faults (about 50 kills) under 16 producers, at least 20,000 records."""
    _r12(run, kills=60, min_acked=20000)
