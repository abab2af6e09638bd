"""R5: cross-file atomicity of transactions at every crash point, then under random kill -9s
(reliability.md §6.3 R5, §3.5; kafka-semantics 3.39: a prepared decision is never reversed).

A transaction writes one record to each of 3 partitions, whose leaders are 3 different
broker files, and commits a consumer-group offset in controller.db. EndTxn prepares in
controller.db, writes a marker in each leader's file, then completes in controller.db.

1. Crash points: for each named point of the commit path (``DLOG_CRASH_POINTS``:
   txn.after_prepare, txn.after_marker, txn.before_complete, txn.after_complete) and each
   decision (commit, abort), the worker serving EndTxn exits at that point; the whole
   service is then killed, its files checked, and restarted without the crash point.
   Start-up recovery must finish the decision on every file: all three records and the
   offset for a commit, none for an abort. Retrying the same EndTxn answers success; the
   other decision is refused.
2. Random kills: a client commits transactions in a tight loop while the service is killed
   at random moments. Afterwards every transaction is visible on all 3 partitions or on none,
   the group's committed offset is exactly the one of the last visible transaction, every
   acknowledged commit is visible and no aborted record is (checker: G1a, lost-write, ...).
"""
from __future__ import annotations

import threading
import time
from itertools import product

import pytest

from service.faults import KNOWN_POINTS

from .nemesis import Nemesis
from .workload import Poller, TxnProducer, committed_offsets, key_of, settled_end, wait_until

POINTS = ("txn.after_prepare", "txn.after_marker", "txn.before_complete", "txn.after_complete")
TOPIC, SRC = "r5", "r5-src"
KEYS = [key_of(TOPIC, p) for p in range(3)]


def _setup(dlog) -> None:
    dlog.create_topic(TOPIC, partitions=3, replication_factor=3)
    dlog.create_topic(SRC, partitions=1, replication_factor=3)
    leaders = {dlog.partition_state(TOPIC, p)["leader_id"] for p in range(3)}
    assert leaders == {0, 1, 2}, f"the 3 partitions should lead on 3 broker files: {leaders}"


def _read_committed(run, api, name: str) -> dict[str, list]:
    """Every committed record of the 3 partitions, by a fresh read_committed consumer."""
    poller = Poller(name, api, run.history, KEYS, "read_committed", max_bytes=256 * 1024)
    assert poller.drain(lambda k: settled_end(api, k, committed=True), timeout=30), poller.positions
    return poller.seen


def test_crash_points_are_known():
    """Every point this suite aims at is declared (so a renamed point cannot go untested)."""
    import service.transactions.coordinator as coordinator

    source = open(coordinator.__file__).read()
    for point in POINTS:
        assert f'crash_point("{point}")' in source, point
        assert point in KNOWN_POINTS, point


def test_r5_crash_at_every_commit_step(run):
    dlog = run.service().start()
    _setup(dlog)
    nemesis = Nemesis(dlog, run.history, run.seed)
    api = run.api(dlog)
    group = "r5-g"
    expected_offset = None
    outcomes = []
    for i, (point, commit) in enumerate(product(POINTS, (True, False))):
        # Restart with the crash point armed.
        dlog.kill9()
        dlog.extra_env["DLOG_CRASH_POINTS"] = point
        dlog.start()
        api.reset()
        tp = TxnProducer(f"t{i}", api, f"r5-{i}")
        assert tp.init().kind == "ok", tp.errors
        op = run.history.invoke(tp.name, "txn", None)
        mops = []
        for p in range(3):
            a, _ = tp.produce(TOPIC, p, [f"{i}:{p}"])
            assert a.kind == "ok", (point, a.status, a.text)
            mops.append(["send", KEYS[p], [a.body[0]["offset"], f"{i}:{p}"]])
        a, _ = tp.send_offsets(group, [(SRC, 0, i + 1)])
        assert a.kind == "ok", (point, a.status, a.text)
        epoch = tp.epoch
        reached_before = dlog.log_text().count(f"crash point {point} reached")
        answer, _ = tp.end(commit, retry=False)
        # The worker serving EndTxn dies at the point. Or, once the decision is prepared, the
        # other worker's recovery duty may finish the transaction first and die there itself;
        # EndTxn then finds it complete and answers. Either way a process died at the point.
        died = wait_until(lambda: dlog.log_text().count(f"crash point {point} reached") > reached_before, 10)
        assert died, f"{point}: no process reached the crash point\n{dlog.log_tail(10)}"
        assert (answer.kind == "info" and answer.status is None) or (answer.kind == "ok" and answer.body["state"] == (
            "CompleteCommit" if commit else "CompleteAbort")), (point, answer.status, answer.text[:200])
        # kill -9 the whole service, check the files, restart without the crash point: recovery.
        kill = nemesis._record("kill", {"crash_point": point, "commit": commit})
        dlog.kill9()
        nemesis.check_integrity(f"crash at {point}")
        dlog.extra_env.pop("DLOG_CRASH_POINTS")
        dlog.start()
        api.reset()
        run.history.complete(kill, "info")
        seen = _read_committed(run, api, f"check{i}")
        mine = {k: [v for _o, v in seen[k] if str(v).startswith(f"{i}:")] for k in KEYS}
        visible = sum(1 for k in KEYS if mine[k])
        offsets = committed_offsets(api, group)
        if commit:
            expected_offset = i + 1
        outcomes.append({"point": point, "commit": commit, "end_txn": answer.kind, "visible_partitions": visible,
                         "group_offset": offsets.get((SRC, 0))})
        assert visible == (3 if commit else 0), outcomes[-1]
        assert offsets.get((SRC, 0)) == expected_offset, outcomes[-1]
        # A retried EndTxn of the same decision succeeds; the other decision is refused.
        again, _ = tp.end(commit, epoch=epoch)
        assert again.kind == "ok" and again.body["state"] == ("CompleteCommit" if commit else "CompleteAbort"), \
            (point, again.status, again.text)
        other, _ = tp.end(not commit, retry=False, epoch=epoch)
        assert other.status == 409, (point, other.status, other.text)
        run.history.complete(op, "ok" if commit else "fail", mops)
    _read_committed(run, api, "final")
    nemesis.check_integrity("the run")
    results = run.check(data_dir=dlog.data_dir)
    run.report(crash_points=outcomes, nemesis=nemesis.summary())
    run.assert_valid(results)
    assert run.stats.summary()["bad"] == []


def _txn_loop(run, api, stop: threading.Event, outcomes: dict, group: str) -> None:
    """Commit transactions of 3 records + an offset until ``stop``; re-initialise after any
    indefinite or refused step (InitProducerId aborts what the last instance left open)."""
    tp = TxnProducer("loop", api, "r5-loop", op_timeout=20)
    n = 0
    while not stop.is_set():
        if tp.producer_id is None:
            if tp.init().kind != "ok":
                time.sleep(0.05)
                continue
        op = run.history.invoke("loop", "txn", [["send", k, f"{n}:{p}"] for p, k in enumerate(KEYS)])
        mops, ok = [], True
        for p in range(3):
            a, _ = tp.produce(TOPIC, p, [f"{n}:{p}"], retry=False)
            if a.kind != "ok":
                ok = False
                break
            mops.append(["send", KEYS[p], [a.body[0]["offset"], f"{n}:{p}"]])
        if ok:
            a, _ = tp.send_offsets(group, [(SRC, 0, n + 1)], retry=False)
            ok = a.kind == "ok"
        if not ok:
            # The commit was never sent: the transaction cannot commit. The next instance aborts it.
            run.history.complete(op, "fail", mops + [["send", KEYS[p], [None, f"{n}:{p}"]]
                                                     for p in range(len(mops), 3)], error="not committed")
            outcomes[n] = "fail"
            tp.producer_id = None
        else:
            a, indefinite = tp.end(True, deadline=time.monotonic() + 20)
            kind = "ok" if a.kind == "ok" else ("info" if indefinite else "fail")
            run.history.complete(op, kind, mops, error=a.error)
            outcomes[n] = kind
            if kind != "ok":
                tp.producer_id = None
        n += 1


def _r5_random(run, kills: int, interval: tuple[float, float]) -> None:
    dlog = run.service().start()
    _setup(dlog)
    api = run.api(dlog)
    nemesis = Nemesis(dlog, run.history, run.seed, faults=("kill",), interval=interval)
    plan = nemesis.schedule(kills)
    outcomes: dict[int, str] = {}
    stop = threading.Event()
    client = threading.Thread(target=_txn_loop, args=(run, run.api(dlog, timeout=15), stop, outcomes, "r5-loop"),
                              daemon=True)
    client.start()
    try:
        nemesis.run(plan, threading.Event())
        assert not nemesis.errors, nemesis.errors
        time.sleep(0.5)
        nemesis.assert_alive()
    finally:
        stop.set()
        client.join(60)
        nemesis.heal()
    assert not client.is_alive()
    assert not nemesis.errors, nemesis.errors
    # Whatever the last instance left open is aborted by a new InitProducerId.
    assert TxnProducer("closer", api, "r5-loop").init().kind == "ok"
    seen = _read_committed(run, api, "final")
    visible: dict[int, set[int]] = {}
    for p, k in enumerate(KEYS):
        for _o, v in seen[k]:
            n, _, q = str(v).partition(":")
            visible.setdefault(int(n), set()).add(int(q))
    torn = {n: sorted(ps) for n, ps in visible.items() if len(ps) != 3}
    offsets = committed_offsets(api, "r5-loop")
    last = max(visible) + 1 if visible else None
    lost_commits = [n for n, kind in outcomes.items() if kind == "ok" and n not in visible]
    nemesis.check_integrity("the run")
    results = run.check(data_dir=dlog.data_dir)
    counts = {k: list(outcomes.values()).count(k) for k in ("ok", "fail", "info")}
    run.report(transactions=counts, visible=len(visible), torn=len(torn), kills=kills, nemesis=nemesis.summary(),
               group_offset=offsets.get((SRC, 0)) if offsets else None)
    assert torn == {}, f"torn transactions (partitions visible): {torn}"
    assert lost_commits == [], lost_commits
    assert offsets is not None and offsets.get((SRC, 0)) == last, (offsets, last)
    run.assert_valid(results)
    assert counts["ok"] >= kills, counts
    assert run.stats.summary()["bad"] == []


def test_r5_random_kills_small(run):
    """PR size: 8 kill -9s at random 0.3-1.2 s intervals into a tight commit loop."""
    _r5_random(run, kills=8, interval=(0.3, 1.2))


@pytest.mark.slow
def test_r5_random_kills_full(run):
    """Full size: 100 kill -9s into the commit loop (0 torn out of 100)."""
    _r5_random(run, kills=100, interval=(0.2, 1.0))
