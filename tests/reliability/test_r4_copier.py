"""R4: a transactional copier under kills, with a history and the checker (reliability.md §6.3
R4; Kafka's transactions_test and TransactionalMessageCopier).

Input records are seeded by idempotent producers. One copier per input partition
(``transactional.id = copier-<i>``) loops: read from its position (read_committed), open a
transaction, send each record to the output topic, add the input offset to the transaction
(TxnOffsetCommit for the copiers' group), then commit, or abort with p = 1/3 and seek back
to the committed offset. An indefinite commit, or a copier crash, makes a new instance: its
InitProducerId fences the old one and aborts (or finishes) its transaction, and it resumes
from the group's committed offset. Meanwhile the nemesis kills the whole service and a
read_committed consumer reads the output concurrently.

Every output value is ``"<input value>:<copier>.<instance>.<txn>"``, unique per attempt, so
the checker tells an aborted attempt's record (G1a) from the committed copy. Oracle (for the
concurrent consumer and for a fresh one at the end): output == input as a set, exactly once;
with one partition in and out (``ordered``), output == input as a sequence; the group's
committed offsets equal the input's end offsets; the checker finds nothing bad.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from .checker import copier_check
from .nemesis import Nemesis
from .workload import (
    Api,
    IdempotentProducer,
    Poller,
    TxnProducer,
    ValueSource,
    committed_offsets,
    key_of,
    settled_end,
    wait_until,
)

SRC, OUT, GROUP = "r4-in", "r4-out", "r4-copiers"


class Copier:
    def __init__(self, index: int, run, api: Api, out_partitions: int, txn_size: int, abort_p: float,
                 crash_at: set[int], end_offset: int) -> None:
        self.index = index
        self.name = f"copier-{index}"
        self.run = run
        self.api = api
        self.out_partitions = out_partitions
        self.txn_size = txn_size
        self.abort_p = abort_p
        self.crash_at = crash_at
        self.end_offset = end_offset
        self.rng = random.Random(run.seed * 7 + index)
        self.in_key = key_of(SRC, index)
        self.tp: TxnProducer | None = None
        self.position = 0
        self.instance = 0
        self.txn_no = 0
        self.counts = {"ok": 0, "fail": 0, "info": 0, "aborts": 0, "crashes": 0, "instances": 0}
        self.unexpected: list[str] = []
        self.error: str | None = None

    def _seek(self, position: int) -> None:
        self.position = position
        op = self.run.history.invoke(self.name, "assign", [["assign", {self.in_key: position}]])
        self.run.history.complete(op, "ok")

    def _start_instance(self, deadline: float) -> bool:
        """A new copier instance: InitProducerId (fencing the last), then the committed offset."""
        if self.tp is not None:
            self.unexpected.extend(self.tp.unexpected)
        self.instance += 1
        self.counts["instances"] += 1
        self.tp = TxnProducer(self.name, self.api, self.name, transaction_timeout_ms=15000)
        while time.monotonic() < deadline:
            if self.tp.init().kind == "ok":
                offsets = committed_offsets(self.api, GROUP)
                if offsets is not None:
                    self._seek(offsets.get((SRC, self.index), 0))
                    return True
            time.sleep(0.1)
        return False

    def _crash(self) -> None:
        self.counts["crashes"] += 1
        op = self.run.history.invoke(self.name, "crash", [["crash"]])
        self.run.history.complete(op, "info")
        self.tp = None

    def run_until_done(self, deadline: float) -> None:
        try:
            while self.position < self.end_offset and time.monotonic() < deadline:
                if self.tp is None and not self._start_instance(deadline):
                    break
                self._one_transaction()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            import traceback

            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"

    def _one_transaction(self) -> None:
        a = self.api.read(SRC, self.index, self.position, "read_committed", 64 * 1024)
        if a.kind != "ok" or not a.body:
            time.sleep(0.05)
            return
        batch = a.body[:self.txn_size]
        n = self.txn_no
        self.txn_no += 1
        tp = self.tp
        assert tp is not None
        op = self.run.history.invoke(self.name, "txn", None)
        mops: list = [["poll", {self.in_key: [[o, v] for o, v in batch]}]]
        by_partition: dict[int, list[str]] = {}
        for _o, v in batch:
            by_partition.setdefault(v % self.out_partitions, []).append(f"{v}:{self.index}.{self.instance}.{n}")
        complete = True
        for p, values in sorted(by_partition.items()):
            ans, _ = tp.produce(OUT, p, values)
            if ans.kind != "ok":
                mops += [["send", key_of(OUT, p), [None, s]] for s in values]
                complete = False
                continue
            mops += [["send", key_of(OUT, p), [r["offset"], s]] for r, s in zip(ans.body, values)]
        next_position = batch[-1][0] + 1
        if complete:
            ans, _ = tp.send_offsets(GROUP, [(SRC, self.index, next_position)])
            complete = ans.kind == "ok"
        crash = n in self.crash_at
        if not complete or crash or self.rng.random() < self.abort_p:
            if crash and complete and self.rng.random() < 0.5:
                # Crash right after sending the commit: its outcome is unknown to this copier.
                self.api.post(f"/v3/clusters/{self.api.cid}/transactions/{tp.tid}:commit", "end-txn",
                              json={"producer_id": tp.producer_id, "producer_epoch": tp.epoch})
                self.run.history.complete(op, "info", mops, error="copier crashed after commit")
                self.counts["info"] += 1
                self._crash()
                return
            if crash:  # crash before committing: the next instance aborts the transaction
                self.run.history.complete(op, "fail", mops, error="copier crashed")
                self.counts["fail"] += 1
                self._crash()
                return
            ans, _ = tp.end(False) if complete else (None, False)
            self.run.history.complete(op, "fail", mops, error="aborted")
            self.counts["fail"] += 1
            self.counts["aborts"] += 1
            if ans is None or ans.kind != "ok":
                self.tp = None  # re-initialise: InitProducerId aborts what is left open
            else:
                offsets = committed_offsets(self.api, GROUP)
                if offsets is None:
                    self.tp = None
                else:
                    self._seek(offsets.get((SRC, self.index), 0))
            return
        ans, indefinite = tp.end(True, deadline=time.monotonic() + 30)
        if ans.kind == "ok":
            self.run.history.complete(op, "ok", mops)
            self.counts["ok"] += 1
            self.position = next_position
            return
        kind = "info" if indefinite else "fail"
        self.run.history.complete(op, kind, mops, error=ans.error)
        self.counts[kind] += 1
        self.tp = None  # a new instance finds out from the committed offset


def _seed(run, dlog, partitions: int, per_partition: int) -> dict[int, int]:
    values = ValueSource()
    producers = [IdempotentProducer(f"seed{p}", run.api(dlog), run.history, SRC, [p], values,
                                    random.Random(run.seed + p), max_batch=50) for p in range(partitions)]
    stop = threading.Event()
    threads = [threading.Thread(target=pr.run, args=(stop, per_partition), daemon=True) for pr in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    api = run.api(dlog)
    ends = {}
    for p in range(partitions):
        assert wait_until(lambda: settled_end(api, key_of(SRC, p)) is not None, 30)
        ends[p] = settled_end(api, key_of(SRC, p))
    return ends


def _r4(run, *, in_partitions: int, out_partitions: int, per_partition: int, txn_size: int, kills: int,
        copier_crashes: int, ordered: bool = False) -> None:
    dlog = run.service().start()
    dlog.create_topic(SRC, partitions=in_partitions, replication_factor=3)
    dlog.create_topic(OUT, partitions=out_partitions, replication_factor=3)
    ends = _seed(run, dlog, in_partitions, per_partition)
    out_keys = [key_of(OUT, p) for p in range(out_partitions)]
    concurrent = Poller("concurrent", run.api(dlog), run.history, out_keys, "read_committed")
    copiers = []
    for i in range(in_partitions):
        txns = max(1, ends[i] // txn_size)
        crash_rng = random.Random(run.seed * 13 + i)
        crash_at = set(crash_rng.sample(range(txns), min(copier_crashes, txns)))
        copiers.append(Copier(i, run, run.api(dlog, timeout=15), out_partitions, txn_size, 1 / 3, crash_at, ends[i]))
    nemesis = Nemesis(dlog, run.history, run.seed, faults=("kill",), interval=(1.5, 3.0))
    plan = nemesis.schedule(kills)
    stop = threading.Event()
    deadline = time.monotonic() + 600
    threads = [threading.Thread(target=c.run_until_done, args=(deadline,), daemon=True) for c in copiers]
    reader = threading.Thread(target=concurrent.run, args=(stop,), daemon=True)
    for t in threads + [reader]:
        t.start()
    try:
        nemesis.run(plan, threading.Event())
        assert not nemesis.errors, nemesis.errors
        nemesis.join(threads, deadline)
    finally:
        stop.set()
        reader.join(30)
        nemesis.heal()
    assert not nemesis.errors, nemesis.errors
    assert not any(c.error for c in copiers), [c.error for c in copiers]
    assert all(c.position >= c.end_offset for c in copiers), [(c.position, c.end_offset) for c in copiers]
    api = run.api(dlog)
    committed_end = lambda k: settled_end(api, k, committed=True)  # noqa: E731
    assert concurrent.drain(committed_end, timeout=60), concurrent.positions
    final = Poller("final", api, run.history, out_keys, "read_committed", max_bytes=256 * 1024)
    assert final.drain(committed_end, timeout=60), final.positions
    inputs_reader = Poller("inputs", api, run.history, [key_of(SRC, p) for p in range(in_partitions)],
                           max_bytes=256 * 1024)
    assert inputs_reader.drain(lambda k: settled_end(api, k), timeout=60)
    inputs = [v for k in inputs_reader.keys for _o, v in inputs_reader.seen[k]]

    def copied(poller: Poller) -> list[int]:
        return [int(str(v).split(":")[0]) for k in out_keys for _o, v in poller.seen[k]]

    final_check = copier_check(inputs, copied(final), ordered=ordered)
    concurrent_check = copier_check(inputs, copied(concurrent), ordered=ordered)
    offsets = committed_offsets(api, GROUP)
    nemesis.check_integrity("the run")
    results = run.check(data_dir=dlog.data_dir)
    unexpected = [u for c in copiers for u in c.unexpected + (c.tp.unexpected if c.tp else [])]
    run.report(inputs=len(inputs), nemesis=nemesis.summary(), copiers={c.name: c.counts for c in copiers},
               final_check={k: final_check[k] for k in ("valid", "outputs", "missing_count", "duplicated_count")},
               concurrent_check={k: concurrent_check[k] for k in ("valid", "outputs", "missing_count",
                                                                  "duplicated_count")})
    assert final_check["valid"], final_check
    assert concurrent_check["valid"], concurrent_check
    assert offsets == {(SRC, p): ends[p] for p in range(in_partitions)}, (offsets, ends)
    run.assert_valid(results)
    assert unexpected == [], unexpected[:10]
    assert run.stats.summary()["bad"] == []
    assert sum(c.counts["aborts"] for c in copiers) >= 1
    assert sum(c.counts["crashes"] for c in copiers) == copier_crashes * in_partitions


def test_r4_copier_small(run):
    """PR size: 2 x 600 records, 2 copiers, transactions of 50, 2 service kills, 2 copier crashes."""
    _r4(run, in_partitions=2, out_partitions=3, per_partition=600, txn_size=50, kills=2, copier_crashes=1)


def test_r4_copier_ordered_small(run):
    """PR size, check_order: one partition in and out, 500 records, 1 kill, 1 copier crash."""
    _r4(run, in_partitions=1, out_partitions=1, per_partition=500, txn_size=50, kills=1, copier_crashes=1,
        ordered=True)


@pytest.mark.slow
def test_r4_copier_full(run):
    """Full size: 2 x 10,000 records in transactions of 100, 10 service kills, 6 copier crashes."""
    _r4(run, in_partitions=2, out_partitions=3, per_partition=10000, txn_size=100, kills=10, copier_crashes=3)


@pytest.mark.slow
def test_r4_copier_ordered_full(run):
    """Full size, check_order: 6,667 records through one partition, 5 kills, 3 copier crashes."""
    _r4(run, in_partitions=1, out_partitions=1, per_partition=6667, txn_size=100, kills=5, copier_crashes=3,
        ordered=True)
