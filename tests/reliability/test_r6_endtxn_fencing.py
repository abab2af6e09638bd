"""R6: stale and duplicated EndTxn, delayed produces, and zombie fencing (reliability.md §6.3 R6;
the Bufstream/KAFKA-17754 hole, redpanda PR #3501; kafka-semantics 3.11-3.12, 3.21, 3.45).

dlog runs transactions V2 (KIP-890): every commit or abort bumps the producer epoch. So:

* a replayed EndTxn(commit) or EndTxn(abort) of transaction N, arriving once N+1 has begun,
  is fenced (409) and N+1's contents and outcome do not change;
* a duplicated EndTxn of the same decision is an idempotent retry: success, no second marker;
* a delayed produce of transaction N (its old epoch) is refused, on a partition N touched
  and on one it did not;
* after a new instance's InitProducerId, the zombie's produce, offsets and EndTxn are refused
  and its open transaction is aborted.

Each scenario runs ``reps`` times with its own transactional id. Every transaction and every
refused request is in the history; a fresh read_committed consumer reads everything at the
end and the checker must find no aborted read (G1a), no lost write, no duplicate.
"""
from __future__ import annotations

import pytest

from .workload import Poller, TxnProducer, key_of, settled_end

TOPIC, SRC = "r6", "r6-src"
KEYS = [key_of(TOPIC, p) for p in range(3)]


class Scenarios:
    def __init__(self, run, api) -> None:
        self.run = run
        self.api = api
        self.counter = 0
        self.refused: dict[str, list[int | None]] = {}
        self.committed: list[str] = []  # values whose transaction committed
        self.aborted: list[str] = []

    def value(self, tag: str) -> str:
        self.counter += 1
        return f"{tag}-{self.counter}"

    def txn(self, tp: TxnProducer, writes: list[tuple[int, str]]) -> tuple[dict, list]:
        """Open a transaction op and produce ``writes`` (partition, value) in it."""
        op = self.run.history.invoke(tp.name, "txn", [["send", KEYS[p], v] for p, v in writes])
        mops = []
        for p, v in writes:
            a, _ = tp.produce(TOPIC, p, [v])
            assert a.kind == "ok", (tp.name, a.status, a.text)
            mops.append(["send", KEYS[p], [a.body[0]["offset"], v]])
        return op, mops

    def finish(self, tp: TxnProducer, op: dict, mops: list, commit: bool) -> None:
        a, _ = tp.end(commit)
        assert a.kind == "ok", (tp.name, a.status, a.text)
        self.run.history.complete(op, "ok" if commit else "fail", mops)
        (self.committed if commit else self.aborted).extend(m[2][1] for m in mops)

    def expect_refused(self, what: str, answer) -> None:
        self.refused.setdefault(what, []).append(answer.status)
        assert answer.status == 409, f"{what}: expected 409, got {answer.status} {answer.text[:300]}"

    def rejected_write(self, tp: TxnProducer, what: str, partition: int, epoch: int, seq: int) -> None:
        """A produce with an old epoch: recorded as a failed op (its value must never show)."""
        v = self.value(what)
        op = self.run.history.invoke(tp.name, "txn", [["send", KEYS[partition], v]])
        record = {"partition_id": partition, "value": {"type": "JSON", "data": v}, "producer_id": tp.producer_id,
                  "producer_epoch": epoch, "sequence": seq, "transactional_id": tp.tid}
        a, _ = tp.produce(TOPIC, partition, [v], retry=False, records=[record])
        self.expect_refused(what, a)
        self.run.history.complete(op, "fail", [["send", KEYS[partition], [None, v]]], error=a.error)

    # ------------------------------------------------------------------ scenarios
    def stale_commit(self, rep: int) -> None:
        tp = TxnProducer(f"stale-commit-{rep}", self.api, f"r6-stale-commit-{rep}")
        assert tp.init().kind == "ok"
        op, mops = self.txn(tp, [(0, self.value("n"))])
        old = tp.epoch
        self.finish(tp, op, mops, commit=True)
        op2, mops2 = self.txn(tp, [(1, self.value("n1")), (2, self.value("n1"))])
        a, _ = tp.end(True, retry=False, epoch=old)  # N's commit, delivered late
        self.expect_refused("stale commit", a)
        self.finish(tp, op2, mops2, commit=False)  # N+1 aborts: nothing of it may show

    def stale_abort(self, rep: int) -> None:
        tp = TxnProducer(f"stale-abort-{rep}", self.api, f"r6-stale-abort-{rep}")
        assert tp.init().kind == "ok"
        op, mops = self.txn(tp, [(0, self.value("n"))])
        old = tp.epoch
        self.finish(tp, op, mops, commit=True)
        op2, mops2 = self.txn(tp, [(1, self.value("n1")), (0, self.value("n1"))])
        a, _ = tp.end(False, retry=False, epoch=old)  # a stale abort must not abort N+1
        self.expect_refused("stale abort", a)
        self.finish(tp, op2, mops2, commit=True)

    def duplicate_end(self, rep: int) -> None:
        tp = TxnProducer(f"dup-end-{rep}", self.api, f"r6-dup-end-{rep}")
        assert tp.init().kind == "ok"
        for commit in (False, True):
            op, mops = self.txn(tp, [(rep % 3, self.value("d")), ((rep + 1) % 3, self.value("d"))])
            old = tp.epoch
            self.finish(tp, op, mops, commit=commit)
            again, _ = tp.end(commit, retry=False, epoch=old)  # the same EndTxn, duplicated
            assert again.kind == "ok", (again.status, again.text)
            assert again.body["producer_epoch"] == tp.epoch, (again.body, tp.epoch)
            assert again.body["state"] == ("CompleteCommit" if commit else "CompleteAbort"), again.body
        # ... and the next transaction is untouched by either duplicate.
        op, mops = self.txn(tp, [(2, self.value("d-next"))])
        self.finish(tp, op, mops, commit=True)

    def zombie(self, rep: int) -> None:
        a_inst = TxnProducer(f"zombie-{rep}", self.api, f"r6-zombie-{rep}")
        assert a_inst.init().kind == "ok"
        op, mops = self.txn(a_inst, [(0, self.value("z")), (1, self.value("z"))])
        a, _ = a_inst.send_offsets("r6-g", [(SRC, 0, rep + 1)])
        assert a.kind == "ok", a.text
        b_inst = TxnProducer(f"new-{rep}", self.api, f"r6-zombie-{rep}")
        assert b_inst.init().kind == "ok"
        assert b_inst.epoch > a_inst.epoch
        # The zombie's open transaction was aborted by the fencing.
        self.run.history.complete(op, "fail", mops)
        self.aborted.extend(m[2][1] for m in mops)
        seq0 = a_inst.sequences.get((TOPIC, 0), 0)
        self.rejected_write(a_inst, "zombie produce (touched partition)", 0, a_inst.epoch, seq0)
        self.rejected_write(a_inst, "zombie produce (new partition)", 2, a_inst.epoch, 0)
        a, _ = a_inst.send_offsets("r6-g", [(SRC, 0, 1000 + rep)], retry=False)
        self.expect_refused("zombie offsets", a)
        a, _ = a_inst.end(True, retry=False)
        self.expect_refused("zombie commit", a)
        op, mops = self.txn(b_inst, [(0, self.value("b")), (2, self.value("b"))])
        self.finish(b_inst, op, mops, commit=True)

    def delayed_produce(self, rep: int) -> None:
        tp = TxnProducer(f"delayed-{rep}", self.api, f"r6-delayed-{rep}")
        assert tp.init().kind == "ok"
        op, mops = self.txn(tp, [(0, self.value("n")), (1, self.value("n"))])
        old, seq1 = tp.epoch, tp.sequences[(TOPIC, 1)]
        self.finish(tp, op, mops, commit=True)
        op2, mops2 = self.txn(tp, [(2, self.value("n1"))])
        # Produces of N arriving late, after N committed and N+1 began (the KAFKA-17754 shape).
        self.rejected_write(tp, "delayed produce (partition of N)", 1, old, seq1)
        self.rejected_write(tp, "delayed produce (partition of N+1)", 2, old, 0)
        self.finish(tp, op2, mops2, commit=True)


def _r6(run, reps: int) -> None:
    dlog = run.service().start()
    dlog.create_topic(TOPIC, partitions=3, replication_factor=3)
    dlog.create_topic(SRC, partitions=1, replication_factor=3)
    api = run.api(dlog)
    s = Scenarios(run, api)
    for rep in range(reps):
        s.stale_commit(rep)
        s.stale_abort(rep)
        s.duplicate_end(rep)
        s.zombie(rep)
        s.delayed_produce(rep)
    final = Poller("final", api, run.history, KEYS, "read_committed", max_bytes=256 * 1024)
    assert final.drain(lambda k: settled_end(api, k, committed=True), timeout=30), final.positions
    visible = sorted(v for k in KEYS for _o, v in final.seen[k])
    results = run.check(data_dir=dlog.data_dir)
    run.report(reps=reps, refused={k: len(v) for k, v in s.refused.items()}, committed=len(s.committed),
               aborted=len(s.aborted))
    assert visible == sorted(s.committed), {"missing": sorted(set(s.committed) - set(visible))[:10],
                                            "unexpected": sorted(set(visible) - set(s.committed))[:10]}
    run.assert_valid(results)
    assert run.stats.summary()["bad"] == []


def test_r6_stale_duplicate_endtxn_and_zombies_small(run):
    """PR size: every scenario 3 times."""
    _r6(run, reps=3)


@pytest.mark.slow
def test_r6_stale_duplicate_endtxn_and_zombies_full(run):
    """Full size: every scenario 50 times."""
    _r6(run, reps=50)
