"""Fixtures of the consumer-group tests: REST consumer instances driven through the Flask test
client (``consumer``), v2 and transactional produces (``produce_json``, ``txn_producer``), the
invariant every rebalance must keep (``check_partitioned``), and one real ``dlog serve`` shared
by the tests of this folder that need processes (``groups_dlog``).

Time is the ``MockClock`` of tests/conftest.py: a poll is made with ``timeout=0`` unless a test
means to wait, and expiry or auto-commit intervals pass with ``clock.advance``.
"""
from __future__ import annotations

import base64
from typing import Iterable

import orjson
import pytest

from tests.e2e.conftest import DlogProcess

V2_JSON = "application/vnd.kafka.v2+json"
V2_EMBEDDED_JSON = "application/vnd.kafka.json.v2+json"
V2_EMBEDDED_BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/json"
# consumer.instance.timeout.ms of the shared real process: short, so expiry can be watched.
REAL_INSTANCE_TIMEOUT_MS = 3000


@pytest.fixture(scope="session")
def groups_dlog(tmp_path_factory) -> DlogProcess:
    """One ``dlog serve`` (3 brokers, 2 gunicorn workers) for the real-process tests of this
    folder; each test uses its own topic and group names."""
    base = tmp_path_factory.mktemp("groups-dlog")
    p = DlogProcess(base / "data", log_path=base / "dlog.log", workers=2,
                    env={"DLOG_CONSUMER_INSTANCE_TIMEOUT_MS": str(REAL_INSTANCE_TIMEOUT_MS)})
    p.start()
    try:
        yield p
    finally:
        p.stop(timeout=10)
        p.kill9()


def error_of(resp, status: int, error_code: int | None = None) -> dict:
    """The JSON error body ``{"error_code", "message"}`` of a response with this status."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = orjson.loads(resp.get_data())
    assert isinstance(body.get("error_code"), int) and isinstance(body.get("message"), str) and body["message"]
    if error_code is not None:
        assert body["error_code"] == error_code, body
    else:
        assert body["error_code"] == status or body["error_code"] // 100 == status, body
    return body


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class Consumer:
    """One REST Proxy v2 consumer instance, spoken to through a Flask test client."""

    def __init__(self, client, group: str, instance_id: str, fmt: str) -> None:
        self.client = client
        self.group = group
        self.instance_id = instance_id
        self.format = fmt
        self.path = f"/consumers/{group}/instances/{instance_id}"
        self.accept = V2_EMBEDDED_JSON if fmt == "json" else V2_EMBEDDED_BINARY

    def __repr__(self) -> str:
        return f"Consumer({self.group}/{self.instance_id})"

    # ------------------------------------------------------------------ raw calls
    def post(self, suffix: str, body=None, content_type: str = V2_JSON, **kw):
        data = None if body is None else orjson.dumps(body)
        return self.client.post(self.path + suffix, data=data, content_type=content_type if data else None, **kw)

    def get(self, suffix: str, **kw):
        return self.client.get(self.path + suffix, **kw)

    # ------------------------------------------------------------------ operations
    def subscribe(self, *topics: str, pattern: str | None = None) -> None:
        body = {"topic_pattern": pattern} if pattern is not None else {"topics": list(topics)}
        r = self.post("/subscription", body)
        assert r.status_code == 204, r.get_data(as_text=True)

    def assign(self, *partitions: tuple[str, int]) -> None:
        r = self.post("/assignments", {"partitions": [{"topic": t, "partition": p} for t, p in partitions]})
        assert r.status_code == 204, r.get_data(as_text=True)

    def assignment(self) -> set[tuple[str, int]]:
        return {(p["topic"], p["partition"]) for p in self.assignments()["partitions"]}

    def assignments(self) -> dict:
        r = self.get("/assignments")
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    def poll_response(self, timeout: int | None = 0, max_bytes: int | None = None, accept: str | None = None):
        query = {}
        if timeout is not None:
            query["timeout"] = timeout
        if max_bytes is not None:
            query["max_bytes"] = max_bytes
        return self.get("/records", query_string=query, headers={"Accept": accept or self.accept})

    def poll(self, timeout: int | None = 0, max_bytes: int | None = None) -> list[dict]:
        r = self.poll_response(timeout, max_bytes)
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.mimetype == self.accept
        return r.get_json()

    def poll_owned(self, timeout: int | None = 0, max_bytes: int | None = None) -> list[dict]:
        """A poll whose records all come from partitions the instance owns after it."""
        records = self.poll(timeout, max_bytes)
        owned = self.assignment()
        strays = [(r["topic"], r["partition"], r["offset"]) for r in records
                  if (r["topic"], r["partition"]) not in owned]
        assert not strays, f"{self} got records of partitions it does not own {sorted(owned)}: {strays}"
        return records

    def drain(self, rounds: int = 50) -> list[dict]:
        """Poll until a poll returns nothing; every record must come from an owned partition."""
        out: list[dict] = []
        for _ in range(rounds):
            page = self.poll_owned()
            if not page:
                return out
            out.extend(page)
        raise AssertionError(f"{self} still receiving records after {rounds} polls")

    def commit(self, body: dict | None = None):
        return self.post("/offsets", body)

    def commit_ok(self, body: dict | None = None) -> None:
        r = self.commit(body)
        assert r.status_code == 200 and r.get_json() == [], r.get_data(as_text=True)

    def committed(self, *partitions: tuple[str, int]) -> dict[tuple[str, int], int]:
        body = {"partitions": [{"topic": t, "partition": p} for t, p in partitions]}
        r = self.client.get(self.path + "/offsets", data=orjson.dumps(body), content_type=V2_JSON)
        assert r.status_code == 200, r.get_data(as_text=True)
        return {(o["topic"], o["partition"]): o["offset"] for o in r.get_json()["offsets"]}

    def seek(self, topic: str, partition: int, offset: int) -> None:
        r = self.post("/positions", {"offsets": [{"topic": topic, "partition": partition, "offset": offset}]})
        assert r.status_code == 204, r.get_data(as_text=True)

    def delete(self) -> None:
        r = self.client.delete(self.path)
        assert r.status_code == 204, r.get_data(as_text=True)


@pytest.fixture
def consumer(client):
    """``consumer(group, name=None, format="json", **configs)`` -> a created ``Consumer``;
    config names use underscores for dots (``auto_offset_reset="earliest"``)."""

    def create(group: str, name: str | None = None, format: str = "json", **configs) -> Consumer:
        body = {"format": format, **{k.replace("_", "."): v for k, v in configs.items()}}
        if name is not None:
            body["name"] = name
        r = client.post(f"/consumers/{group}", data=orjson.dumps(body), content_type=V2_JSON)
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.mimetype == V2_JSON
        return Consumer(client, group, r.get_json()["instance_id"], format)

    return create


@pytest.fixture
def produce_json(client):
    """``produce_json(topic, values, partition=None, keys=None)`` -> [(partition, offset)] of a
    v2 json produce (acks=1)."""

    def produce(topic: str, values: Iterable, partition: int | None = None, keys: Iterable | None = None):
        values = list(values)
        keys = list(keys) if keys is not None else [None] * len(values)
        records = []
        for k, v in zip(keys, values):
            rec = {"value": v}
            if k is not None:
                rec["key"] = k
            if partition is not None:
                rec["partition"] = partition
            records.append(rec)
        r = client.post(f"/topics/{topic}", data=orjson.dumps({"records": records}),
                        content_type=V2_EMBEDDED_JSON, query_string={"acks": "1"})
        assert r.status_code == 200, r.get_data(as_text=True)
        offsets = r.get_json()["offsets"]
        assert all(o["error_code"] is None for o in offsets), offsets
        return [(o["partition"], o["offset"]) for o in offsets]

    return produce


class TxnProducer:
    """A transactional producer over the v3 extensions: InitProducerId, transactional produce,
    transactional offsets, commit and abort."""

    def __init__(self, client, cid: str, transactional_id: str) -> None:
        self.client = client
        self.v3 = f"/v3/clusters/{cid}"
        self.transactional_id = transactional_id
        self.sequences: dict[tuple[str, int], int] = {}
        r = client.post(f"{self.v3}/producers", json={"transactional_id": transactional_id})
        assert r.status_code == 200, r.get_data(as_text=True)
        self.producer_id = r.get_json()["producer_id"]
        self.producer_epoch = r.get_json()["producer_epoch"]

    def send(self, topic: str, partition: int, *values) -> list[int]:
        seq = self.sequences.get((topic, partition), 0)
        body = b" ".join(orjson.dumps({
            "partition_id": partition, "value": {"type": "JSON", "data": v}, "producer_id": self.producer_id,
            "producer_epoch": self.producer_epoch, "sequence": seq + i, "transactional_id": self.transactional_id})
            for i, v in enumerate(values))
        r = self.client.post(f"{self.v3}/topics/{topic}/records", data=body, content_type=JSON,
                             query_string={"acks": "1"})
        assert r.status_code == 200, r.get_data(as_text=True)
        reports = [orjson.loads(line) for line in r.get_data().split(b"\r\n") if line.strip()]
        assert all(rep.get("error_code", 200) == 200 for rep in reports), reports
        self.sequences[(topic, partition)] = seq + len(values)
        return [rep["offset"] for rep in reports]

    def send_offsets(self, group: str, offsets: dict[tuple[str, int], int], generation_id: int | None = None,
                     member_id: str | None = None):
        body = {"producer_id": self.producer_id, "producer_epoch": self.producer_epoch, "consumer_group_id": group,
                "offsets": [{"topic_name": t, "partition_id": p, "offset": o} for (t, p), o in offsets.items()]}
        if generation_id is not None:
            body["generation_id"] = generation_id
        if member_id is not None:
            body["member_id"] = member_id
        return self.client.post(f"{self.v3}/transactions/{self.transactional_id}/offsets", json=body)

    def end(self, commit: bool = True) -> dict:
        verb = "commit" if commit else "abort"
        r = self.client.post(f"{self.v3}/transactions/{self.transactional_id}:{verb}",
                             json={"producer_id": self.producer_id, "producer_epoch": self.producer_epoch})
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
        self.producer_epoch = body["producer_epoch"]  # every end of a transaction bumps the epoch
        self.sequences.clear()  # a new epoch starts its sequences at 0
        return body


@pytest.fixture
def txn_producer(client, cluster_id):
    """``txn_producer(transactional_id)`` -> a ``TxnProducer`` (InitProducerId done)."""
    return lambda transactional_id: TxnProducer(client, cluster_id, transactional_id)


@pytest.fixture
def check_partitioned():
    """``check_partitioned(consumers, partitions)``: the instances' assignments are disjoint
    and together are exactly ``partitions``. Returns {instance: assignment}."""

    def check(consumers: Iterable[Consumer], partitions: Iterable[tuple[str, int]]) -> dict:
        owned = {c.instance_id: c.assignment() for c in consumers}
        seen: dict[tuple[str, int], str] = {}
        for instance, parts in owned.items():
            for tp in parts:
                assert tp not in seen, f"{tp} owned by {seen[tp]} and {instance}: {owned}"
                seen[tp] = instance
        assert set(seen) == set(partitions), f"assigned {sorted(seen)} != {sorted(set(partitions))}: {owned}"
        return owned

    return check


def values(records: Iterable[dict]) -> list:
    return [r["value"] for r in records]


def by_partition(records: Iterable[dict]) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for r in records:
        out.setdefault((r["topic"], r["partition"]), []).append(r["offset"])
    return out
