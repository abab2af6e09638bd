"""R0: the history checker's self-tests (reliability.md §6.3 R0; "test the checker itself").

For every anomaly the checker names there is a positive synthetic history (the anomaly is
found) and a negative one (it is not, and the history is valid), after Jepsen's
``kafka_test.clj`` fixtures. G0 and int-send-skip are legal in Kafka (kafka-semantics 3.41):
they are reported and do not make a history invalid.
"""
from __future__ import annotations

import json
import random
import time

import pytest

from .checker import analyse, copier_check, main

K, X, Y = "t/0", "t/1", "t/2"


class H:
    """A synthetic history: each ``op`` appends an invoke and its completion."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def op(self, process, f: str, type_: str, value) -> "H":
        invoke_value = [[m[0], m[1], m[2][1]] if m[0] == "send" else ["poll"] if m[0] == "poll" else m
                        for m in value]
        self.events.append({"index": len(self.events), "time": len(self.events), "process": process,
                            "type": "invoke", "f": f, "value": invoke_value})
        self.events.append({"index": len(self.events), "time": len(self.events), "process": process,
                            "type": type_, "f": f, "value": value})
        return self

    def send(self, process, key, offset, value, type_="ok") -> "H":
        return self.op(process, "send", type_, [["send", key, [offset, value]]])

    def poll(self, process, reads: dict, type_="ok") -> "H":
        return self.op(process, "poll", type_, [["poll", {k: [list(p) for p in v] for k, v in reads.items()}]])

    def txn(self, process, mops: list, type_="ok") -> "H":
        return self.op(process, "txn", type_, mops)

    def assign(self, process, starts: dict) -> "H":
        return self.op(process, "assign", "ok", [["assign", starts]])

    def check(self, **kw) -> dict:
        return analyse(self.events, **kw)


def sends(h: H, process, key, values, start=0) -> H:
    for i, v in enumerate(values):
        h.send(process, key, start + i, v)
    return h


def found(results: dict, kind: str) -> bool:
    return kind in results["anomaly_types"]


def assert_clean(results: dict) -> None:
    assert results["valid"], results
    assert results["anomaly_types"] == [], results["anomalies"]


# ---------------------------------------------------------------------------- offsets and values
def test_inconsistent_offsets_positive():
    r = H().send("p", K, 0, 1).poll("c", {K: [(0, 2)]}).check()
    assert found(r, "inconsistent-offsets") and not r["valid"]
    assert r["anomalies"]["inconsistent-offsets"]["examples"][0] == {"key": K, "offset": 0, "values": [1, 2]}


def test_inconsistent_offsets_negative():
    assert_clean(H().send("p", K, 0, 1).poll("c", {K: [(0, 1)]}).check())


def test_duplicate_positive():
    r = sends(H(), "p", K, [1]).poll("c", {K: [(0, 1), (1, 1)]}).check()
    assert found(r, "duplicate") and not r["valid"]
    assert r["anomalies"]["duplicate"]["examples"][0]["offsets"] == [0, 1]


def test_duplicate_negative():
    assert_clean(sends(H(), "p", K, [1, 2]).poll("c", {K: [(0, 1), (1, 2)]}).check())


# ---------------------------------------------------------------------------- loss
def test_lost_write_positive():
    h = sends(H(), "p", K, [1, 2, 3]).poll("c", {K: [(0, 1)]}).poll("c", {K: [(2, 3)]})
    r = h.check()
    assert found(r, "lost-write") and not r["valid"]
    assert [e["value"] for e in r["anomalies"]["lost-write"]["examples"]] == [2]


def test_lost_write_positive_info_transaction_partly_read():
    """Reading part of a transaction proves the rest exists, though its op was info."""
    h = H().txn("p", [["send", K, [0, "a"]], ["send", X, [0, "b"]]], type_="info")
    h.send("q", X, 1, "c").poll("c", {K: [(0, "a")], X: [(1, "c")]})
    r = h.check()
    assert [(e["key"], e["value"]) for e in r["anomalies"]["lost-write"]["examples"]] == [(X, "b")]


def test_lost_write_negative():
    h = sends(H(), "p", K, [1, 2, 3]).poll("c", {K: [(0, 1), (1, 2)]}).poll("c", {K: [(2, 3)]})
    assert_clean(h.check())


def test_lost_write_negative_unread_info_is_not_lost():
    """An info write nobody read may or may not have happened: neither lost nor unseen."""
    h = H().send("p", K, None, "maybe", type_="info")
    h.send("p", K, 0, 1).poll("c", {K: [(0, 1)]})
    assert_clean(h.check())


def test_unseen_positive():
    r = sends(H(), "p", K, [1, 2]).poll("c", {K: [(0, 1)]}).check()
    assert found(r, "unseen") and not found(r, "lost-write") and not r["valid"]
    assert r["anomalies"]["unseen"]["examples"][0]["value"] == 2


def test_unseen_negative():
    assert_clean(sends(H(), "p", K, [1, 2]).poll("c", {K: [(0, 1), (1, 2)]}).check())
    # without a final read-everything phase, unseen is not checked
    assert_clean(sends(H(), "p", K, [1, 2]).poll("c", {K: [(0, 1)]}).check(check_unseen=False))


# ---------------------------------------------------------------------------- transactions
def test_aborted_read_positive():
    h = H().txn("p", [["send", K, [0, 5]]], type_="fail").poll("c", {K: [(0, 5)]})
    r = h.check()
    assert found(r, "G1a") and not r["valid"]


def test_aborted_read_negative():
    assert_clean(H().txn("p", [["send", K, [0, 5]]], type_="ok").poll("c", {K: [(0, 5)]}).check())
    # an aborted write nobody reads is fine
    h = H().txn("p", [["send", K, [0, 5]]], type_="fail").send("q", K, 1, 6).poll("c", {K: [(1, 6)]})
    assert_clean(h.check())


def test_precommitted_read_positive():
    h = H().txn("p", [["send", K, [0, 1]], ["poll", {K: [[0, 1]]}]])
    r = h.check()
    assert found(r, "precommitted-read") and not r["valid"]


def test_precommitted_read_negative():
    h = H().send("q", K, 0, 1).txn("p", [["poll", {K: [[0, 1]]}], ["send", X, [0, 2]]]).poll("c", {X: [(0, 2)]})
    assert_clean(h.check())


# ---------------------------------------------------------------------------- consumer order
def _three(h: H) -> H:
    return sends(h, "p", K, [1, 2, 3]).poll("z", {K: [(0, 1), (1, 2), (2, 3)]})


def test_poll_skip_positive():
    r = _three(H()).poll("c", {K: [(0, 1)]}).poll("c", {K: [(2, 3)]}).check()
    assert found(r, "poll-skip") and not r["valid"]
    assert r["anomalies"]["poll-skip"]["examples"][0]["delta"] == 2
    # allowed when consumers subscribe (rebalances move positions)
    assert r["anomaly_types"] == ["poll-skip"]
    assert _three(H()).poll("c", {K: [(0, 1)]}).poll("c", {K: [(2, 3)]}).check(mode="subscribe")["valid"]


def test_poll_skip_positive_first_poll_after_assign():
    r = _three(H()).assign("c", {K: 0}).poll("c", {K: [(1, 2)]}).check()
    assert found(r, "poll-skip")


def test_poll_skip_negative():
    assert_clean(_three(H()).poll("c", {K: [(0, 1)]}).poll("c", {K: [(1, 2)]}).check())
    # an assign (seek) in between resets the position
    assert_clean(_three(H()).poll("c", {K: [(0, 1)]}).assign("c", {K: 2}).poll("c", {K: [(2, 3)]}).check())


def test_poll_skip_negative_gap_of_aborted_records():
    """read_committed skips an aborted transaction's offsets: not in the version order, no skip."""
    h = H().send("p", K, 0, 1).txn("t", [["send", K, [1, "x"]]], type_="fail").send("p", K, 3, 2)
    h.poll("c", {K: [(0, 1)]}).poll("c", {K: [(3, 2)]})
    assert_clean(h.check())


def test_nonmonotonic_poll_positive():
    r = _three(H()).poll("c", {K: [(1, 2)]}).poll("c", {K: [(0, 1)]}).check()
    assert found(r, "nonmonotonic-poll") and not r["valid"]
    r = _three(H()).poll("c", {K: [(1, 2)]}).poll("c", {K: [(1, 2)]}).check()
    assert found(r, "nonmonotonic-poll")


def test_nonmonotonic_poll_negative():
    assert_clean(_three(H()).poll("c", {K: [(1, 2)]}).poll("c", {K: [(2, 3)]}).check())
    # a failed poll carries no position
    assert_clean(_three(H()).poll("c", {K: [(1, 2)]}).poll("c", {K: [(0, 1)]}, type_="fail")
                 .poll("c", {K: [(2, 3)]}).check())


def test_int_poll_skip_positive():
    r = _three(H()).poll("c", {K: [(0, 1), (2, 3)]}).check()
    assert found(r, "int-poll-skip") and not r["valid"]


def test_int_poll_skip_negative():
    assert_clean(_three(H()).poll("c", {K: [(0, 1), (1, 2), (2, 3)]}).check())


def test_int_nonmonotonic_poll_positive():
    r = _three(H()).poll("c", {K: [(1, 2), (0, 1)]}).check()
    assert found(r, "int-nonmonotonic-poll") and not r["valid"]


def test_int_nonmonotonic_poll_negative():
    assert_clean(_three(H()).poll("c", {K: [(0, 1), (1, 2)]}).check())


# ---------------------------------------------------------------------------- producer order
def test_nonmonotonic_send_positive():
    h = H().send("p", K, 1, "b").send("p", K, 0, "a").poll("c", {K: [(0, "a"), (1, "b")]})
    r = h.check()
    assert found(r, "nonmonotonic-send") and not r["valid"]


def test_nonmonotonic_send_negative():
    assert_clean(H().send("p", K, 0, "a").send("p", K, 1, "b").poll("c", {K: [(0, "a"), (1, "b")]}).check())
    # a new producer session (crash) starts over
    h = H().send("p", K, 1, "b").op("p", "crash", "info", [["crash"]]).send("p", K, 0, "a")
    assert_clean(h.poll("c", {K: [(0, "a"), (1, "b")]}).check())


def test_int_nonmonotonic_send_positive():
    h = H().txn("p", [["send", K, [1, "b"]], ["send", K, [0, "a"]]]).poll("c", {K: [(0, "a"), (1, "b")]})
    r = h.check()
    assert found(r, "int-nonmonotonic-send") and not r["valid"]


def test_int_nonmonotonic_send_negative():
    h = H().txn("p", [["send", K, [0, "a"]], ["send", K, [1, "b"]]]).poll("c", {K: [(0, "a"), (1, "b")]})
    assert_clean(h.check())


def test_int_send_skip_positive_is_allowed():
    h = H().txn("p", [["send", K, [0, "a"]], ["send", K, [2, "c"]]]).send("q", K, 1, "b")
    r = h.poll("c", {K: [(0, "a"), (1, "b"), (2, "c")]}).check()
    assert found(r, "int-send-skip")
    assert r["valid"], "int-send-skip is normal in Kafka (no write isolation)"


def test_int_send_skip_negative():
    h = H().txn("p", [["send", K, [0, "a"]], ["send", K, [1, "b"]]]).send("q", K, 2, "c")
    assert_clean(h.poll("c", {K: [(0, "a"), (1, "b"), (2, "c")]}).check())


# ---------------------------------------------------------------------------- cycles
def test_g0_positive_is_reported_not_failed():
    h = H().txn("t1", [["send", X, [0, "x1"]], ["send", Y, [1, "y1"]]])
    h.txn("t2", [["send", X, [1, "x2"]], ["send", Y, [0, "y2"]]])
    r = h.poll("c", {X: [(0, "x1"), (1, "x2")], Y: [(0, "y2"), (1, "y1")]}).check()
    assert found(r, "G0")
    assert r["valid"], "G0 is legal for Kafka transactions (kafka-semantics 3.41)"
    cycle = r["anomalies"]["G0"]["examples"][0]["cycle"]
    assert {c["process"] for c in cycle} == {"t1", "t2"} and all(c["edge"] == ["ww"] for c in cycle)


def test_g0_negative():
    h = H().txn("t1", [["send", X, [0, "x1"]], ["send", Y, [0, "y1"]]])
    h.txn("t2", [["send", X, [1, "x2"]], ["send", Y, [1, "y2"]]])
    assert_clean(h.poll("c", {X: [(0, "x1"), (1, "x2")], Y: [(0, "y1"), (1, "y2")]}).check())


def test_g1c_positive():
    """Circular information flow: each transaction read the other's write."""
    h = H().txn("t1", [["send", X, [0, "x1"]], ["poll", {Y: [[0, "y1"]]}]])
    h.txn("t2", [["send", Y, [0, "y1"]], ["poll", {X: [[0, "x1"]]}]])
    r = h.check()
    assert found(r, "G1c") and not r["valid"]
    assert "G1c" in r["bad_anomaly_types"]


def test_g1c_negative():
    h = H().txn("t1", [["send", X, [0, "x1"]]])
    h.txn("t2", [["poll", {X: [[0, "x1"]]}], ["send", Y, [0, "y1"]]])
    assert_clean(h.poll("c", {Y: [(0, "y1")]}).check())


def test_g2_positive_is_reported_not_failed():
    """Write skew: each transaction read the key the other then appended to (rw both ways)."""
    h = H().send("s", X, 0, "x0").send("s", Y, 0, "y0")
    h.txn("t1", [["poll", {X: [[0, "x0"]]}], ["send", Y, [1, "y1"]]])
    h.txn("t2", [["poll", {Y: [[0, "y0"]]}], ["send", X, [1, "x1"]]])
    r = h.poll("c", {X: [(0, "x0"), (1, "x1")], Y: [(0, "y0"), (1, "y1")]}).check()
    assert found(r, "G2") and r["valid"]


def test_g2_negative():
    h = H().send("s", X, 0, "x0").send("s", Y, 0, "y0")
    h.txn("t1", [["poll", {X: [[0, "x0"]]}], ["send", Y, [1, "y1"]]])
    h.txn("t2", [["poll", {Y: [[0, "y0"], [1, "y1"]]}], ["send", X, [1, "x1"]]])
    assert_clean(h.poll("c", {X: [(0, "x0"), (1, "x1")], Y: [(0, "y0"), (1, "y1")]}).check())
    # reading a prefix of one batch is no anti-dependency on that batch
    h = H().op("s", "send", "ok", [["send", X, [0, "a"]], ["send", X, [1, "b"]]])
    h.txn("t", [["poll", {X: [[0, "a"]]}], ["send", Y, [0, "y"]]])
    assert_clean(h.poll("c", {X: [(0, "a"), (1, "b")], Y: [(0, "y")]}).check())


def test_nemesis_events_are_ignored():
    h = _three(H())
    h.events.append({"index": len(h.events), "time": 0, "process": "nemesis", "type": "invoke", "f": "kill",
                     "value": None})
    h.events.append({"index": len(h.events), "time": 0, "process": "nemesis", "type": "info", "f": "kill",
                     "value": None})
    r = h.check()
    assert_clean(r)
    assert r["stats"]["faults"] == 1


# ---------------------------------------------------------------------------- copier oracle
def test_copier_check_positive():
    r = copier_check([1, 2, 3], [1, 3, 3, 9])
    assert not r["valid"]
    assert r["missing"] == [2] and r["duplicated"] == [3] and r["unexpected"] == [9]
    r = copier_check([1, 2, 3], [1, 3, 2], ordered=True)
    assert not r["valid"] and r["order_mismatch_at"] == 1


def test_copier_check_negative():
    assert copier_check([1, 2, 3], [3, 1, 2])["valid"]
    assert copier_check([1, 2, 3], [1, 2, 3], ordered=True)["valid"]


# ---------------------------------------------------------------------------- scale and CLI
def test_20000_ops_in_under_10_seconds():
    """reliability.md §6.4's budget: a 20,000-op history in under 10 s on one core."""
    rng = random.Random(1)
    h = H()
    keys = [f"t/{i}" for i in range(6)]
    next_offset = {k: 0 for k in keys}
    written: dict[str, list] = {k: [] for k in keys}
    pos = {k: 0 for k in keys}
    value = 0
    for i in range(10000):
        k = rng.choice(keys)
        if rng.random() < 0.3:
            mops = []
            for _ in range(rng.randint(1, 3)):
                k2 = rng.choice(keys)
                mops.append(["send", k2, [next_offset[k2], value]])
                written[k2].append((next_offset[k2], value))
                next_offset[k2] += 1
                value += 1
            h.txn(f"w{i % 4}", mops)
        else:
            h.send(f"p{i % 4}", k, next_offset[k], value)
            written[k].append((next_offset[k], value))
            next_offset[k] += 1
            value += 1
        pk = rng.choice(keys)
        h.poll("c", {pk: written[pk][pos[pk]:pos[pk] + 3]})
        pos[pk] = min(len(written[pk]), pos[pk] + 3)
    for k in keys:
        h.poll("final", {k: written[k]})
    start = time.monotonic()
    r = h.check()
    elapsed = time.monotonic() - start
    assert r["stats"]["ops"] >= 20000
    assert r["valid"], r["bad_anomaly_types"]
    assert set(r["anomaly_types"]) <= {"G0", "int-send-skip", "G2"}
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_command_line(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(e) + "\n" for e in _three(H()).events))
    assert main([str(good)]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in sends(H(), "p", K, [1, 2]).poll("c", {K: [(1, 2)]}).events))
    capsys.readouterr()
    assert main([str(bad)]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert results["bad_anomaly_types"] == ["lost-write"]
    assert "valid=False" in captured.err


@pytest.mark.parametrize("kind", ["lost-write", "duplicate", "G1a", "G1c", "unseen", "inconsistent-offsets"])
def test_bad_types_make_history_invalid(kind):
    histories = {
        "lost-write": lambda: sends(H(), "p", K, [1, 2, 3]).poll("c", {K: [(0, 1), (2, 3)]}),
        "duplicate": lambda: sends(H(), "p", K, [1]).poll("c", {K: [(0, 1), (1, 1)]}),
        "G1a": lambda: H().txn("p", [["send", K, [0, 5]]], type_="fail").poll("c", {K: [(0, 5)]}),
        "G1c": lambda: H().txn("t1", [["send", X, [0, "x1"]], ["poll", {Y: [[0, "y1"]]}]])
        .txn("t2", [["send", Y, [0, "y1"]], ["poll", {X: [[0, "x1"]]}]]),
        "unseen": lambda: sends(H(), "p", K, [1]),
        "inconsistent-offsets": lambda: H().send("p", K, 0, 1).poll("c", {K: [(0, 2)]}),
    }
    r = histories[kind]().check()
    assert kind in r["bad_anomaly_types"] and not r["valid"]
    assert histories[kind]().check(allowed=r["bad_anomaly_types"])["valid"]
