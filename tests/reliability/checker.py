"""A history checker for Kafka-style queue workloads: a standard-library port of Jepsen's
``jepsen.tests.kafka`` analysis (reliability.md §2.3 and §6.4, kafka-semantics.md §6.B).

Input is a history: one dict per event, as ``history.HistoryRecorder`` writes them to
``history.jsonl``::

    {"index", "time", "process", "type": "invoke|ok|fail|info", "f": "send|poll|txn|assign|...",
     "value": [...micro-ops...], "error": ...}

Micro-ops are ``["send", key, value]`` when invoked and ``["send", key, [offset, value]]`` when
completed (offset ``None`` when unknown), and ``["poll"]`` invoked, ``["poll", {key: [[offset,
value], ...]}]`` completed. A key is one topic-partition; every value is unique per key.
``["assign", {key: start_offset}]`` (f ``assign``/``subscribe``) and f ``crash`` reset a
process's consumer and producer positions. Operations of other processes (the nemesis) and
other ``f`` are ignored.

Steps (as Jepsen's): build, per key, a version order offset -> values from every poll (ok,
info or fail: pollers only emit real data) and from the sends of operations that must have
committed (ok, or info with one of their writes read); rank offsets densely into indices;
then look for the anomalies below. ``analyse`` returns a JSON-able dict with ``valid``, the
anomaly types found, the bad ones, a count and the first examples of each.

=======================  ============================================================  =====
anomaly                  meaning                                                        bad?
=======================  ============================================================  =====
inconsistent-offsets     one (key, offset) holds two or more values                     yes
duplicate                one value at two or more offsets of a key                      yes
lost-write               a committed write below the highest index ever read, unread   yes
unseen                   an acknowledged write never read by the end                    yes
G1a                      a read of a value whose writer definitely failed (aborted)     yes
precommitted-read        a transaction read its own (uncommitted) write                 yes
poll-skip                successive polls of a process skipped an index                 yes*
nonmonotonic-poll        successive polls of a process went back or repeated            yes*
int-poll-skip            the same, inside one operation                                 yes
int-nonmonotonic-poll    the same, inside one operation                                 yes
nonmonotonic-send        a process's later send landed at a lower index                 yes
int-nonmonotonic-send    the same, inside one operation                                 yes
int-send-skip            another write landed between two sends of one transaction      no
G0                       a write cycle (ww edges only): legal in Kafka (3.41)           no
G1c                      a cycle of ww and wr edges with at least one wr                yes
G2                       a cycle with an rw (anti-dependency) edge: reported only       no
=======================  ============================================================  =====

(*) allowed in ``mode="subscribe"`` (rebalances move positions), as in Jepsen.

Also here: ``copier_check`` (Kafka's transactions_test oracle: output == input as a set,
exactly once, optionally in order). Command line:
``python tests/reliability/checker.py history.jsonl [--mode subscribe]`` prints the results.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any, Iterable

ANOMALIES = (
    "inconsistent-offsets", "duplicate", "lost-write", "unseen", "G1a", "precommitted-read",
    "poll-skip", "nonmonotonic-poll", "int-poll-skip", "int-nonmonotonic-poll",
    "nonmonotonic-send", "int-nonmonotonic-send", "int-send-skip", "G0", "G1c", "G2",
)
ALWAYS_ALLOWED = frozenset({"int-send-skip", "G0", "G2"})
SUBSCRIBE_ALLOWED = frozenset({"poll-skip", "nonmonotonic-poll"})
CLIENT_FS = frozenset({"send", "poll", "txn"})
RESET_FS = frozenset({"assign", "subscribe", "crash"})
MAX_EXAMPLES = 8


def load_history(path: str) -> list[dict]:
    """The events of a ``history.jsonl`` file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _sends(op: dict) -> list[tuple[str, int | None, Any]]:
    """(key, offset or None, value) of every send micro-op of a completed operation."""
    out = []
    for mop in op.get("value") or ():
        if mop and mop[0] == "send":
            k, x = mop[1], mop[2]
            completed = op["type"] != "invoke"
            if completed and isinstance(x, list) and len(x) == 2 and (x[0] is None or isinstance(x[0], int)):
                out.append((k, x[0], _hashable(x[1])))
            else:
                out.append((k, None, _hashable(x)))
    return out


def _polls(op: dict) -> list[dict[str, list[tuple[int, Any]]]]:
    """Each poll micro-op's {key: [(offset, value), ...]} of a completed operation."""
    out = []
    for mop in op.get("value") or ():
        if mop and mop[0] == "poll" and len(mop) > 1 and isinstance(mop[1], dict):
            out.append({k: [(int(o), _hashable(v)) for o, v in pairs] for k, pairs in mop[1].items()})
    return out


class _Examples:
    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.examples: dict[str, list] = defaultdict(list)

    def add(self, kind: str, example: dict) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)


def analyse(history: Iterable[dict], mode: str = "assign", allowed: Iterable[str] = (),
            check_unseen: bool = True) -> dict:
    """Check a history; see the module docstring. ``mode`` is ``assign`` or ``subscribe``;
    ``allowed`` adds anomaly types that do not make the history invalid; ``check_unseen=False``
    when the history has no final read-everything phase."""
    events = sorted(history, key=lambda e: e["index"])
    done = [e for e in events if e.get("type") in ("ok", "info", "fail") and e.get("process") != "nemesis"]
    client_ops = [e for e in done if e.get("f") in CLIENT_FS]
    found = _Examples()

    # 1. writers and readers
    writers: dict[tuple[str, Any], list[dict]] = defaultdict(list)
    read_values: dict[tuple[str, Any], list[dict]] = defaultdict(list)
    for op in client_ops:
        for k, _o, v in _sends(op):
            writers[(k, v)].append(op)
        for poll in _polls(op):
            for k, pairs in poll.items():
                for _o, v in pairs:
                    read_values[(k, v)].append(op)

    def must_have_committed(op: dict) -> bool:
        if op["type"] == "ok":
            return True
        return op["type"] == "info" and any((k, v) in read_values for k, _o, v in _sends(op))

    committed_ops = {op["index"] for op in client_ops if must_have_committed(op)}

    # 2. version order: key -> offset -> {values}
    log: dict[str, dict[int, set]] = defaultdict(lambda: defaultdict(set))
    for op in client_ops:
        for poll in _polls(op):
            for k, pairs in poll.items():
                for o, v in pairs:
                    log[k][o].add(v)
        if op["index"] in committed_ops:
            for k, o, v in _sends(op):
                if o is not None and o >= 0:
                    log[k][o].add(v)
    index_of: dict[str, dict[int, int]] = {}
    offsets_by_index: dict[str, list[int]] = {}
    value_indices: dict[tuple[str, Any], list[int]] = defaultdict(list)
    for k, by_offset in log.items():
        ordered = sorted(by_offset)
        offsets_by_index[k] = ordered
        index_of[k] = {o: i for i, o in enumerate(ordered)}
        for i, o in enumerate(ordered):
            values = by_offset[o]
            if len(values) > 1:
                found.add("inconsistent-offsets", {"key": k, "offset": o, "values": sorted(values, key=repr)})
            for v in values:
                value_indices[(k, v)].append(i)

    # 3a. duplicates
    for (k, v), idxs in value_indices.items():
        if len(idxs) > 1:
            found.add("duplicate", {"key": k, "value": v,
                                    "offsets": [offsets_by_index[k][i] for i in idxs]})

    # 3b. lost writes and unseen
    max_read_index: dict[str, int] = {}
    for (k, v), _readers in read_values.items():
        for i in value_indices.get((k, v), ()):
            if i > max_read_index.get(k, -1):
                max_read_index[k] = i
    for (k, v), ops in writers.items():
        if (k, v) in read_values:
            continue
        writer = next((op for op in ops if op["index"] in committed_ops), None)
        if writer is None:
            continue
        idxs = value_indices.get((k, v))
        if idxs and max(idxs) <= max_read_index.get(k, -1):
            found.add("lost-write", {"key": k, "value": v, "offset": offsets_by_index[k][max(idxs)],
                                     "writer": writer["index"], "max-read-offset":
                                     offsets_by_index[k][max_read_index[k]]})
        elif check_unseen and writer["type"] == "ok":
            found.add("unseen", {"key": k, "value": v, "writer": writer["index"],
                                 "offset": offsets_by_index[k][max(idxs)] if idxs else None})

    # 3c. aborted reads (G1a) and precommitted reads
    for (k, v), readers in read_values.items():
        ws = writers.get((k, v), [])
        if ws and all(w["type"] == "fail" for w in ws):
            for r in readers:
                found.add("G1a", {"key": k, "value": v, "reader": r["index"], "writer": ws[0]["index"]})
    for op in client_ops:
        own = {(k, v) for k, _o, v in _sends(op)}
        if not own:
            continue
        for poll in _polls(op):
            for k, pairs in poll.items():
                for o, v in pairs:
                    if (k, v) in own:
                        found.add("precommitted-read", {"op": op["index"], "key": k, "value": v, "offset": o})

    # 3d. per-process poll and send order
    last_poll: dict[Any, dict[str, int]] = defaultdict(dict)
    last_send: dict[Any, dict[str, int]] = defaultdict(dict)
    for op in done:
        p = op.get("process")
        if op.get("f") in RESET_FS:
            last_poll[p] = {}
            last_send[p] = {}
            if op["type"] == "ok" and op.get("f") in ("assign", "subscribe"):
                starts = next((m[1] for m in op.get("value") or () if m and m[0] in ("assign", "subscribe")
                               and len(m) > 1 and isinstance(m[1], dict)), {})
                for k, start in starts.items():
                    if start is None:
                        continue
                    first = next((i for i, o in enumerate(offsets_by_index.get(k, ())) if o >= start), None)
                    if first is not None:
                        last_poll[p][k] = first - 1
            continue
        if op.get("f") not in CLIENT_FS or op["type"] != "ok":
            continue
        seen_in_op: dict[str, int] = {}
        for poll in _polls(op):
            for k, pairs in poll.items():
                for o, v in pairs:
                    i = index_of.get(k, {}).get(o)
                    if i is None:
                        continue
                    if k in seen_in_op:
                        prev, internal = seen_in_op[k], True
                    elif k in last_poll[p]:
                        prev, internal = last_poll[p][k], False
                    else:
                        seen_in_op[k] = i
                        continue
                    delta = i - prev
                    if delta != 1:
                        kind = ("int-" if internal else "") + ("poll-skip" if delta > 1 else "nonmonotonic-poll")
                        found.add(kind, {"process": p, "op": op["index"], "key": k,
                                         "prev-offset": offsets_by_index[k][prev] if prev >= 0 else None,
                                         "offset": o, "delta": delta})
                    seen_in_op[k] = i
        last_poll[p].update(seen_in_op)
        sent_in_op: dict[str, int] = {}
        for k, o, _v in _sends(op):
            i = index_of.get(k, {}).get(o) if o is not None else None
            if i is None:
                continue
            if k in sent_in_op:
                prev = sent_in_op[k]
                if i <= prev:
                    found.add("int-nonmonotonic-send", {"process": p, "op": op["index"], "key": k, "offset": o,
                                                        "prev-offset": offsets_by_index[k][prev]})
                elif i > prev + 1:
                    found.add("int-send-skip", {"process": p, "op": op["index"], "key": k, "offset": o,
                                                "prev-offset": offsets_by_index[k][prev]})
            elif k in last_send[p] and i <= last_send[p][k]:
                found.add("nonmonotonic-send", {"process": p, "op": op["index"], "key": k, "offset": o,
                                                "prev-offset": offsets_by_index[k][last_send[p][k]]})
            sent_in_op[k] = i
        last_send[p].update(sent_in_op)

    # 4. dependency cycles (G0, G1c; G2 reported)
    cycles = _cycles(client_ops, committed_ops, offsets_by_index, log, writers, index_of)
    for kind, cycle in cycles:
        found.add(kind, {"cycle": cycle})

    bad_allowed = set(ALWAYS_ALLOWED) | set(allowed)
    if mode == "subscribe":
        bad_allowed |= SUBSCRIBE_ALLOWED
    types = sorted(found.counts)
    bad = [t for t in types if t not in bad_allowed]
    sends = sum(1 for op in client_ops if _sends(op))
    return {
        "valid": not bad,
        "mode": mode,
        "anomaly_types": types,
        "bad_anomaly_types": bad,
        "anomalies": {t: {"count": found.counts[t], "examples": found.examples[t]} for t in types},
        "stats": {
            "ops": len(client_ops),
            "ok": sum(1 for op in client_ops if op["type"] == "ok"),
            "info": sum(1 for op in client_ops if op["type"] == "info"),
            "fail": sum(1 for op in client_ops if op["type"] == "fail"),
            "send_ops": sends,
            "values_written": len(writers),
            "values_read": len(read_values),
            "keys": len(log),
            "faults": sum(1 for e in events if e.get("process") == "nemesis" and e.get("type") == "invoke"),
        },
    }


def _cycles(ops: list[dict], committed: set[int], offsets_by_index: dict[str, list[int]],
            log: dict[str, dict[int, set]], writers: dict, index_of: dict) -> list[tuple[str, list]]:
    """Elle-style cycle search over committed operations: ww, wr and rw edges (§6.4 step 4)."""
    by_index = {op["index"]: op for op in ops}
    nodes = {i for i in committed} | {op["index"] for op in ops if op["type"] == "ok"}
    writer_at: dict[tuple[str, int], int] = {}  # (key, dense index) -> writer op index
    for k, ordered in offsets_by_index.items():
        for i, o in enumerate(ordered):
            for v in log[k][o]:
                w = next((op["index"] for op in writers.get((k, v), ()) if op["index"] in committed), None)
                if w is not None:
                    writer_at[(k, i)] = w
    edges: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    # ww: successive writers in each key's version order
    for k, ordered in offsets_by_index.items():
        prev = None
        for i in range(len(ordered)):
            w = writer_at.get((k, i))
            if w is None:
                continue
            if prev is not None and prev != w:
                edges[prev][w].add("ww")
            prev = w
    # wr and rw: from each committed reader's highest read of each key
    for op in ops:
        r = op["index"]
        if r not in nodes:
            continue
        highest: dict[str, int] = {}
        for poll in _polls(op):
            for k, pairs in poll.items():
                for o, _v in pairs:
                    i = index_of.get(k, {}).get(o)
                    if i is not None and i > highest.get(k, -1):
                        highest[k] = i
        for k, i in highest.items():
            w = writer_at.get((k, i))
            if w is not None and w != r:
                edges[w][r].add("wr")
            nxt = writer_at.get((k, i + 1))
            # Reading a prefix of one operation's writes is no anti-dependency on it.
            if nxt is not None and nxt != r and nxt != w:
                edges[r][nxt].add("rw")
    found: list[tuple[str, list]] = []
    for kind, types in (("G0", {"ww"}), ("G1c", {"ww", "wr"}), ("G2", {"ww", "wr", "rw"})):
        graph = {a: {b for b, ts in out.items() if ts & types} for a, out in edges.items()}
        for scc in _tarjan(graph):
            if len(scc) < 2:
                continue
            # The cycle must use an edge of the class's own kind (wr for G1c, rw for G2).
            need = {"G0": "ww", "G1c": "wr", "G2": "rw"}[kind]
            cycle = _shortest_cycle_with(graph, edges, scc, need)
            if cycle is not None:
                found.append((kind, [{"op": n, "f": by_index[n].get("f"), "process": by_index[n].get("process"),
                                      "edge": sorted(edges[n][m])} for n, m in zip(cycle, cycle[1:] + cycle[:1])]))
    return found


def _tarjan(graph: dict[int, set[int]]) -> list[list[int]]:
    """Strongly connected components (iterative Tarjan: no recursion limit on long histories)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    result: list[list[int]] = []
    counter = 0
    all_nodes = set(graph) | {b for out in graph.values() for b in out}
    for root in sorted(all_nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    scc.append(n)
                    if n == node:
                        break
                result.append(sorted(scc))
    return result


def _shortest_cycle_with(graph: dict[int, set[int]], edges: dict, scc: list[int], need: str) -> list[int] | None:
    """The shortest cycle inside ``scc`` that uses at least one edge of type ``need``: for each
    such edge a -> b, a shortest path b -> ... -> a closes it. Returned as [a, b, ...]."""
    members = set(scc)
    best: list[int] | None = None
    for a in scc:
        for b in sorted(graph.get(a, ())):
            if b not in members or need not in edges[a][b]:
                continue
            path = _bfs(graph, members, b, a)  # [b, ..., a]
            if path is None:
                continue
            cycle = [a] + path[:-1]
            if best is None or len(cycle) < len(best):
                best = cycle
            if len(best) == 2:
                return best
    return best


def _bfs(graph: dict[int, set[int]], members: set[int], start: int, goal: int) -> list[int] | None:
    """A shortest path start -> ... -> goal inside ``members`` (inclusive of both ends)."""
    if start == goal:
        return [start]
    parent = {start: None}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph.get(node, ())):
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                if nxt == goal:
                    path = [nxt]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return path[::-1]
                queue.append(nxt)
    return None


# ---------------------------------------------------------------------------- copier oracle
def copier_check(input_values: Iterable[Any], output_values: Iterable[Any], ordered: bool = False) -> dict:
    """Kafka's transactions_test oracle: every input value appears in the output exactly once
    (``missing``, ``duplicated``, ``unexpected`` are empty), and with ``ordered`` the output
    sequence equals the input sequence."""
    inputs = list(input_values)
    outputs = list(output_values)
    counts: dict[Any, int] = defaultdict(int)
    for v in outputs:
        counts[v] += 1
    in_set = set(inputs)
    result = {
        "inputs": len(inputs),
        "outputs": len(outputs),
        "missing": sorted((v for v in in_set if v not in counts), key=repr)[:20],
        "missing_count": sum(1 for v in in_set if v not in counts),
        "duplicated": sorted((v for v, c in counts.items() if c > 1), key=repr)[:20],
        "duplicated_count": sum(1 for c in counts.values() if c > 1),
        "unexpected": sorted((v for v in counts if v not in in_set), key=repr)[:20],
    }
    if ordered:
        first_diff = next((i for i, (a, b) in enumerate(zip(inputs, outputs)) if a != b), None)
        if first_diff is None and len(inputs) != len(outputs):
            first_diff = min(len(inputs), len(outputs))
        result["order_mismatch_at"] = first_diff
    result["valid"] = (not result["missing_count"] and not result["duplicated_count"] and not result["unexpected"]
                       and result.get("order_mismatch_at") is None)
    return result


def summary_line(results: dict) -> str:
    """One line for logs and failure messages."""
    counts = ", ".join(f"{t}={results['anomalies'][t]['count']}" for t in results["anomaly_types"]) or "none"
    s = results["stats"]
    return (f"valid={results['valid']} ops={s['ops']} (ok {s['ok']}, info {s['info']}, fail {s['fail']}) "
            f"faults={s['faults']} anomalies: {counts}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check a dlog reliability history (history.jsonl).")
    ap.add_argument("history")
    ap.add_argument("--mode", choices=("assign", "subscribe"), default="assign")
    ap.add_argument("--allow", action="append", default=[], help="an anomaly type that does not fail the check")
    ap.add_argument("--no-unseen", action="store_true", help="the history has no final read-everything phase")
    args = ap.parse_args(argv)
    results = analyse(load_history(args.history), args.mode, args.allow, check_unseen=not args.no_unseen)
    json.dump(results, sys.stdout, indent=2, default=repr)
    print()
    print(summary_line(results), file=sys.stderr)
    return 0 if results["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
