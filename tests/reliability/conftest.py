"""Fixtures of the reliability suites (reliability.md §6): the ``run`` of one test.

``run`` gives a seed, a history (``history.jsonl``), shared client statistics, services
(``run.service()`` makes a ``DlogProcess`` from tests/e2e, not started) and the checker
(``run.check()``, which writes ``results.json``). Every service is killed when the test ends.

When a test fails, its history, results, failure report, service logs and SQLite files
(after the service was killed) are copied to ``tests/reliability/failures/<test>-seed<seed>/`` (or under
``$DLOG_RELIABILITY_FAILURES``), and the failure report gets a section saying where, with the
command that replays the run: ``DLOG_RELIABILITY_SEED=<seed> python -m pytest <test>``. The
fault schedule comes from the seed; client timing around it still varies.

``DLOG_RELIABILITY_REPORT=<file>`` appends each run's summary (operations, faults, anomalies,
runtime) to that file as a JSON line. Full-size runs are marked ``slow`` (``--run-slow``).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DlogProcess

from .checker import analyse, summary_line
from .history import HistoryRecorder
from .workload import Api, Stats, split_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEED_ENV = "DLOG_RELIABILITY_SEED"
FAILURES_ENV = "DLOG_RELIABILITY_FAILURES"
REPORT_ENV = "DLOG_RELIABILITY_REPORT"


class Run:
    """One reliability run: seed, history, services, checker results and artefacts."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.nodeid = request.node.nodeid
        self.name = request.node.name
        self.slow = request.node.get_closest_marker("slow") is not None
        env_seed = os.environ.get(SEED_ENV)
        self.seed = int(env_seed) if env_seed else zlib.crc32(self.name.encode()) % 100000
        self.rng = random.Random(self.seed)
        self.dir = tmp_path / "run"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.history = HistoryRecorder(self.dir / "history.jsonl")
        self.history.event("harness", "meta", {"seed": self.seed, "test": self.nodeid})
        self.stats = Stats()
        self.services: list[DlogProcess] = []
        self.results: dict | None = None
        self.extra: dict[str, Any] = {}
        self.failed = False
        self.failure_text = ""
        self.started = time.monotonic()
        base = Path(os.environ.get(FAILURES_ENV) or HERE / "failures")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        self.artifacts = base / f"{safe}-seed{self.seed}"

    # ------------------------------------------------------------------ services and clients
    def service(self, name: str = "data", **kw) -> DlogProcess:
        kw.setdefault("log_path", self.dir / f"{name}.log")
        p = DlogProcess(self.dir / name, **kw)
        self.services.append(p)
        return p

    def api(self, dlog: DlogProcess, timeout: float = 10.0) -> Api:
        return Api(dlog.url, dlog.cluster_id_cached(), self.stats, timeout)

    # ------------------------------------------------------------------ checking
    def check(self, mode: str = "assign", allowed: tuple[str, ...] = (), check_unseen: bool = True,
              data_dir: Path | None = None) -> dict:
        """Run the checker on the history so far; write ``results.json``; for lost or unseen
        values, look them up in the broker files directly (Kafka's ``check_lost_data``)."""
        results = analyse(self.history.events(), mode, allowed, check_unseen)
        missing = [(e["key"], e["value"]) for t in ("lost-write", "unseen") if t in results["anomalies"]
                   for e in results["anomalies"][t]["examples"]]
        if missing and data_dir is not None:
            results["storage_lookup"] = locate_values(data_dir, missing)
        self.results = results
        (self.dir / "results.json").write_text(json.dumps(results, indent=2, default=repr))
        return results

    def assert_valid(self, results: dict | None = None) -> None:
        results = results or self.results
        assert results is not None
        assert results["valid"], (f"history anomalies: {results['bad_anomaly_types']}\n{summary_line(results)}\n"
                                  + json.dumps({t: results["anomalies"][t] for t in results["bad_anomaly_types"]},
                                               indent=1, default=repr)[:4000]
                                  + (f"\nstorage lookup: {results.get('storage_lookup')}"
                                     if results.get("storage_lookup") else ""))

    def report(self, **fields: Any) -> dict:
        """Print (and append to $DLOG_RELIABILITY_REPORT) the run's summary."""
        summary = {"test": self.nodeid, "seed": self.seed, "runtime_s": round(time.monotonic() - self.started, 1)}
        if self.results is not None:
            summary["ops"] = self.results["stats"]["ops"]
            summary["op_types"] = {k: self.results["stats"][k] for k in ("ok", "info", "fail")}
            summary["anomalies"] = {t: self.results["anomalies"][t]["count"] for t in self.results["anomaly_types"]}
            summary["valid"] = self.results["valid"]
        summary["requests"] = self.stats.summary()["requests"]
        summary.update(fields)
        self.extra["summary"] = summary
        print("\nRELIABILITY " + json.dumps(summary, default=repr))
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(summary, default=repr) + "\n")
        return summary

    # ------------------------------------------------------------------ failures
    def replay_text(self) -> str:
        test = self.nodeid
        slow = " --run-slow" if self.slow else ""
        return (f"seed: {self.seed}\n"
                f"artifacts (history.jsonl, results.json, service logs, SQLite files): {self.artifacts}\n"
                f"replay: {SEED_ENV}={self.seed} {REPO / '.venv/bin/python'} -m pytest '{test}'{slow}\n"
                f"re-check the history: python {HERE / 'checker.py'} {self.artifacts / 'history.jsonl'}")

    def save_artifacts(self) -> None:
        target = self.artifacts
        if target.exists():
            target = target.with_name(f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            self.artifacts = target
        shutil.copytree(self.dir, target, dirs_exist_ok=True)
        (target / "REPLAY.txt").write_text(self.replay_text() + "\n")
        if self.failure_text:
            (target / "failure.txt").write_text(self.failure_text)
        if self.extra:
            (target / "extra.json").write_text(json.dumps(self.extra, indent=2, default=repr))
        (target / "stats.json").write_text(json.dumps(self.stats.summary(), indent=2))

    def close(self) -> None:
        for p in self.services:
            p.kill9()
        self.history.close()
        if self.failed:
            self.save_artifacts()


def locate_values(data_dir: Path, missing: list[tuple[str, Any]]) -> dict:
    """Where each (key, value) is in the broker files, read directly with sqlite3: tells
    "absent from storage" (data loss) from "stored but not served" (a read-path bug)."""
    found: dict[str, list] = {}
    for path in sorted(Path(data_dir).glob("broker-*.db")):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            for key, value in missing:
                topic, partition = split_key(key)
                raw = json.dumps(value, separators=(",", ":")).encode()
                rows = con.execute(
                    "SELECT r.offset, l.high_watermark, l.log_end_offset FROM record r JOIN log l "
                    "ON r.log_id = l.log_id WHERE l.topic_name = ? AND l.partition_id = ? AND r.value = ?",
                    (topic, partition, raw)).fetchall()
                for offset, hw, leo in rows:
                    found.setdefault(f"{key}:{value}", []).append({"file": path.name, "offset": offset,
                                                                   "hw": hw, "leo": leo})
        finally:
            con.close()
    return {f"{k}:{v}": found.get(f"{k}:{v}", "absent from every broker file") for k, v in missing}


@pytest.fixture
def run(request, tmp_path):
    r = Run(request, tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    r = getattr(item, "funcargs", {}).get("run")
    if isinstance(r, Run) and rep.failed and rep.when in ("setup", "call"):
        r.failed = True
        r.failure_text += f"==== {rep.when}\n{rep.longreprtext}\n"
        rep.sections.append(("reliability: seed, artifacts and replay", r.replay_text()))
