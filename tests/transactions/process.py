"""Helpers for the real-process transaction tests (test_crash_points.py, test_copier.py).

``HttpTxn`` speaks dlog's transaction API over real HTTP to a ``DlogProcess``
(tests/e2e/conftest.py); ``Files`` reads the data directory's SQLite files directly, bypassing
the service (reliability.md 6.2's "oracle" and 6.9's log invariants): the coordinator's state
in controller.db and every replica's records and markers in each broker-<id>.db.
"""
from __future__ import annotations

import json
import sqlite3
import struct
import time
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import BINARY_V2, JSON, JSON_V2, DlogProcess

CONTROL_NAMES = {0: "ABORT", 1: "COMMIT"}


class HttpError(Exception):
    def __init__(self, resp: requests.Response) -> None:
        try:
            self.body = resp.json()
        except ValueError:
            self.body = {"message": resp.text}
        self.status = resp.status_code
        self.kafka_error = self.body.get("kafka_error") if isinstance(self.body, dict) else None
        super().__init__(f"{resp.status_code} {self.body}")


class HttpTxn:
    """dlog's transaction calls over HTTP, on one ``requests.Session``."""

    def __init__(self, dlog: DlogProcess, timeout: float = 30.0) -> None:
        self.dlog = dlog
        self.timeout = timeout
        self.session = requests.Session()
        self._cid: str | None = None

    @property
    def url(self) -> str:
        return self.dlog.url

    @property
    def cid(self) -> str:
        if self._cid is None:
            r = self.session.get(f"{self.url}/v3/clusters", timeout=self.timeout)
            r.raise_for_status()
            self._cid = r.json()["data"][0]["cluster_id"]
        return self._cid

    def close(self) -> None:
        self.session.close()

    def _post(self, path: str, **kw) -> requests.Response:
        return self.session.post(self.url + path, timeout=self.timeout, **kw)

    def _get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url + path, timeout=self.timeout, **kw)

    @staticmethod
    def _ok(resp: requests.Response) -> Any:
        if resp.status_code >= 400:
            raise HttpError(resp)
        return resp.json() if resp.status_code == 200 and resp.content else None

    # -------------------------------------------------------------- producers and transactions
    def init(self, transactional_id: str, timeout_ms: int | None = None) -> tuple[int, int]:
        body: dict[str, Any] = {"transactional_id": transactional_id}
        if timeout_ms is not None:
            body["transaction_timeout_ms"] = timeout_ms
        got = self._ok(self._post(f"/v3/clusters/{self.cid}/producers", json=body))
        return got["producer_id"], got["producer_epoch"]

    def produce(self, topic: str, records: list[dict], acks: str = "all") -> list[dict]:
        """A v3 produce; the delivery reports (raises HttpError on an all-failed answer)."""
        resp = self._post(f"/v3/clusters/{self.cid}/topics/{topic}/records", params={"acks": acks},
                          data="".join(json.dumps(r) for r in records), headers={"Content-Type": JSON})
        if resp.status_code >= 400:
            raise HttpError(resp)
        reports = [json.loads(line) for line in resp.text.split("\r\n") if line.strip()]
        bad = [r for r in reports if r.get("error_code") != 200]
        if bad:
            raise AssertionError(f"partial produce failure: {bad}")
        return reports

    @staticmethod
    def txn_records(transactional_id: str, pid: int, epoch: int, partition: int, values: list[Any],
                    first_seq: int, key: Any = None) -> list[dict]:
        out = []
        for i, v in enumerate(values):
            r = {"partition_id": partition, "value": {"type": "JSON", "data": v}, "producer_id": pid,
                 "producer_epoch": epoch, "sequence": first_seq + i, "transactional_id": transactional_id}
            if key is not None:
                r["key"] = {"type": "JSON", "data": key}
            out.append(r)
        return out

    def plain(self, topic: str, partition: int, values: list[Any]) -> list[int]:
        records = [{"partition_id": partition, "value": {"type": "JSON", "data": v}} for v in values]
        return [r["offset"] for r in self.produce(topic, records)]

    def txn_offsets(self, transactional_id: str, pid: int, epoch: int, group: str,
                    offsets: dict[tuple[str, int], int]) -> None:
        body = {"producer_id": pid, "producer_epoch": epoch, "consumer_group_id": group,
                "offsets": [{"topic_name": t, "partition_id": p, "offset": o} for (t, p), o in offsets.items()]}
        self._ok(self._post(f"/v3/clusters/{self.cid}/transactions/{transactional_id}/offsets", json=body))

    def end(self, transactional_id: str, pid: int, epoch: int, commit: bool) -> dict:
        verb = "commit" if commit else "abort"
        return self._ok(self._post(f"/v3/clusters/{self.cid}/transactions/{transactional_id}:{verb}",
                                   json={"producer_id": pid, "producer_epoch": epoch}))

    def describe(self, transactional_id: str) -> dict:
        return self._ok(self._get(f"/v3/clusters/{self.cid}/transactions/{transactional_id}"))

    # -------------------------------------------------------------- groups
    def group_offsets(self, group: str) -> dict[tuple[str, int], int]:
        resp = self._get(f"/v3/clusters/{self.cid}/consumer-groups/{group}/offsets")
        if resp.status_code == 404:
            return {}
        return {(d["topic_name"], d["partition_id"]): d["offset"] for d in self._ok(resp)["data"]}

    def reset_group_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._ok(self._post(f"/v3/clusters/{self.cid}/consumer-groups/{group}/offsets", json={
            "offsets": [{"topic_name": t, "partition_id": p, "offset": o} for (t, p), o in offsets.items()]}))

    # -------------------------------------------------------------- reads
    def read_page(self, topic: str, partition: int, offset: int, isolation: str,
                  max_bytes: int = 1 << 20) -> tuple[list[dict], int]:
        resp = self._get(f"/topics/{topic}/partitions/{partition}/records",
                         params={"offset": offset, "isolation_level": isolation, "max_bytes": max_bytes},
                         headers={"Accept": JSON_V2})
        if resp.status_code >= 400:
            raise HttpError(resp)
        return resp.json(), int(resp.headers["X-Dlog-Next-Offset"])

    def read(self, topic: str, partition: int, isolation: str = "read_committed", offset: int = 0) -> list[tuple[int, Any]]:
        """(offset, value) of everything a reader of ``isolation`` sees now, from ``offset``."""
        out: list[tuple[int, Any]] = []
        while True:
            page, nxt = self.read_page(topic, partition, offset, isolation)
            out += [(r["offset"], r["value"]) for r in page]
            if nxt == offset:
                return out
            offset = nxt

    def partition(self, topic: str, partition: int) -> dict:
        return self._ok(self._get(f"/v3/clusters/{self.cid}/topics/{topic}/partitions/{partition}"))

    def wait_settled(self, topic: str, partitions, timeout: float = 30.0) -> dict[int, dict]:
        """Each partition once HW == LSO == LEO (followers caught up, no transaction in flight),
        or as it is when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        out = {}
        for p in partitions:
            while True:
                s = self.partition(topic, p)
                if s["high_watermark"] == s["log_end_offset"] == s["last_stable_offset"] or time.monotonic() > deadline:
                    out[p] = s
                    break
                time.sleep(0.05)
        return out


class Files:
    """Direct reads of a data directory's SQLite files (the service may be running or dead)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)

    def _query(self, name: str, sql: str, args: tuple = ()) -> list[tuple]:
        con = sqlite3.connect(str(self.data_dir / name), timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def brokers(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.data_dir.glob("broker-*.db"))

    def txn_state(self, transactional_id: str) -> tuple[str, int, int] | None:
        """(state, producer_id, producer_epoch) of a transactional id in controller.db."""
        rows = self._query("controller.db", "SELECT state, producer_id, producer_epoch FROM \"transaction\" "
                                            "WHERE transactional_id = ?", (transactional_id,))
        return tuple(rows[0]) if rows else None

    def pending_offsets(self) -> list[tuple]:
        return self._query("controller.db", "SELECT transactional_id, group_id, topic_name, partition_id, \"offset\" "
                                            "FROM transaction_offset")

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._query(
            "controller.db", "SELECT topic_name, partition_id, \"offset\" FROM committed_offset WHERE group_id = ?",
            (group,))}

    def replica(self, broker: int, topic: str, partition: int) -> dict | None:
        """One replica: its log row (LEO, HW) and every record row, markers decoded."""
        name = f"broker-{broker}.db"
        logs = self._query(name, "SELECT log_id, log_end_offset, high_watermark FROM log "
                                 "WHERE topic_name = ? AND partition_id = ?", (topic, partition))
        if not logs:
            return None
        log_id, leo, hw = logs[0]
        rows = self._query(name, "SELECT \"offset\", producer_id, producer_epoch, is_transactional, is_control, "
                                 "key, value FROM record WHERE log_id = ? ORDER BY \"offset\"", (log_id,))
        records = []
        for offset, pid, epoch, is_txn, is_control, key, value in rows:
            if is_control:
                records.append({"offset": offset, "pid": pid, "epoch": epoch,
                                "marker": CONTROL_NAMES[struct.unpack(">hh", key)[1]]})
            else:
                records.append({"offset": offset, "pid": pid, "epoch": epoch, "txn": bool(is_txn),
                                "value": json.loads(value)})
        return {"leo": leo, "hw": hw, "records": records}

    def replicas(self, topic: str, partition: int) -> dict[int, dict]:
        """Every broker file's replica of a partition (brokers without one are left out)."""
        return {b: r for b in self.brokers() if (r := self.replica(b, topic, partition)) is not None}


def read_all_committed(http: HttpTxn, topic: str, partitions) -> dict[int, list[tuple[int, Any]]]:
    return {p: http.read(topic, p, "read_committed") for p in partitions}


__all__ = ["BINARY_V2", "Files", "HttpError", "HttpTxn", "read_all_committed"]
