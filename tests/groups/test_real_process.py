"""Consumer groups against a real ``dlog serve`` with 2 gunicorn workers: instance state lives
in controller.db, so any worker serves any call (even after the worker that created an
instance is killed), a long poll wakes on a produce served by another process, and the
expiry duty removes an idle instance in the background."""
from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time

import requests

from tests.e2e.conftest import BINARY_V2, b64
from tests.groups.conftest import REAL_INSTANCE_TIMEOUT_MS, V2_JSON

TIMEOUT = 30


def call(dlog, method: str, path: str, body=None, accept: str | None = None, **kw) -> requests.Response:
    """One request on a fresh connection, so the kernel may hand it to either worker."""
    headers = {}
    data = None
    if body is not None:
        headers["Content-Type"] = V2_JSON
        data = json.dumps(body)
    if accept:
        headers["Accept"] = accept
    return requests.request(method, dlog.url + path, data=data, headers=headers, timeout=TIMEOUT, **kw)


class RealConsumer:
    def __init__(self, dlog, group: str, name: str, **config) -> None:
        self.dlog = dlog
        self.path = f"/consumers/{group}/instances/{name}"
        r = call(dlog, "POST", f"/consumers/{group}", {"name": name, "format": "binary", **config})
        assert r.status_code == 200, r.text
        assert r.json()["base_uri"] == f"{dlog.url}{self.path}"

    def assignment(self) -> set:
        r = call(self.dlog, "GET", self.path + "/assignments")
        assert r.status_code == 200, r.text
        return {(p["topic"], p["partition"]) for p in r.json()["partitions"]}

    def poll(self, timeout: int = 0) -> list[dict]:
        r = call(self.dlog, "GET", self.path + "/records", params={"timeout": timeout}, accept=BINARY_V2)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith(BINARY_V2)
        return r.json()

    def poll_owned(self, timeout: int = 0) -> list[dict]:
        records = self.poll(timeout)
        owned = self.assignment()
        assert all((r["topic"], r["partition"]) in owned for r in records), (owned, records)
        return records


def b64decode(text: str) -> str:
    return base64.b64decode(text).decode()


def produce(dlog, topic: str, values: list[str]) -> None:
    status, reports = dlog.produce_v3(topic, [{"value": {"type": "BINARY", "data": b64(v)}} for v in values])
    assert status == 200 and all(r["error_code"] == 200 for r in reports), reports


def test_any_worker_serves_any_instance_even_after_a_worker_dies(groups_dlog):
    dlog = groups_dlog
    dlog.create_topic("rp-orders", partitions=3, replication_factor=3)
    a = RealConsumer(dlog, "rp-billing", "a", **{"auto.offset.reset": "earliest", "auto.commit.enable": "false"})
    b = RealConsumer(dlog, "rp-billing", "b", **{"auto.offset.reset": "earliest", "auto.commit.enable": "false"})
    for c in (a, b):
        r = call(dlog, "POST", c.path + "/subscription", {"topics": ["rp-orders"]})
        assert r.status_code == 204, r.text
    owned = [a.assignment(), b.assignment()]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == {("rp-orders", p) for p in range(3)}
    produced = [f"order-{i}" for i in range(30)]
    produce(dlog, "rp-orders", produced[:15])

    got: list[str] = []
    for c in (a, b):
        for _ in range(5):
            got += [b64decode(r["value"]) for r in c.poll_owned()]
    # Kill one worker: the instances, their positions and assignments live in controller.db.
    victim = dlog.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    dlog.wait_workers(exclude=[victim])
    produce(dlog, "rp-orders", produced[15:])
    assert [a.assignment(), b.assignment()] == owned
    for _ in range(10):
        for c in (a, b):
            got += [b64decode(r["value"]) for r in c.poll_owned()]
        if len(got) >= len(produced):
            break
    assert sorted(got) == sorted(produced)  # each once: positions survived the worker's death
    for c in (a, b):
        r = call(dlog, "POST", c.path + "/offsets")
        assert r.status_code == 200 and r.json() == [], r.text
    r = call(dlog, "GET", f"/v3/clusters/{dlog.cluster_id()}/consumer-groups/rp-billing/lag-summary")
    assert r.status_code == 200 and r.json()["total_lag"] == 0, r.text
    for c in (a, b):
        assert call(dlog, "DELETE", c.path).status_code == 204


def test_long_poll_wakes_on_a_produce_from_another_connection(groups_dlog):
    dlog = groups_dlog
    dlog.create_topic("rp-wake", partitions=1, replication_factor=3)
    c = RealConsumer(dlog, "rp-wake-group", "c", **{"auto.offset.reset": "earliest"})
    assert call(dlog, "POST", c.path + "/subscription", {"topics": ["rp-wake"]}).status_code == 204
    assert c.poll() == []
    result: dict = {}

    def long_poll():
        start = time.monotonic()
        result["records"] = c.poll(timeout=15_000)
        result["elapsed"] = time.monotonic() - start

    waiter = threading.Thread(target=long_poll, daemon=True)
    waiter.start()
    time.sleep(0.5)
    produce(dlog, "rp-wake", ["wake-up"])
    waiter.join(20)
    assert [b64decode(r["value"]) for r in result["records"]] == ["wake-up"]
    assert result["elapsed"] < 5.0, result["elapsed"]  # well before the 15 s timeout
    # A json instance asked for binary records: 406 40601, whichever worker answers.
    j = RealConsumer(dlog, "rp-wake-json", "j", format="json")
    for _ in range(4):
        r = call(dlog, "GET", j.path + "/records", accept=BINARY_V2)
        assert r.status_code == 406 and r.json()["error_code"] == 40601, r.text
    assert call(dlog, "DELETE", j.path).status_code == 204
    assert call(dlog, "DELETE", c.path).status_code == 204


def test_an_idle_instance_expires_in_the_background_and_its_partitions_move(groups_dlog):
    dlog = groups_dlog
    dlog.create_topic("rp-expiry", partitions=2, replication_factor=3)
    idle = RealConsumer(dlog, "rp-expiry-group", "idle")
    busy = RealConsumer(dlog, "rp-expiry-group", "busy")
    for c in (idle, busy):
        assert call(dlog, "POST", c.path + "/subscription", {"topics": ["rp-expiry"]}).status_code == 204
    assert len(idle.assignment()) == 1 and len(busy.assignment()) == 1
    deadline = time.monotonic() + REAL_INSTANCE_TIMEOUT_MS / 1000 + 10
    while time.monotonic() < deadline:
        busy.poll(timeout=200)  # keeps busy alive; idle says nothing
        if busy.assignment() == {("rp-expiry", 0), ("rp-expiry", 1)}:
            break
    assert busy.assignment() == {("rp-expiry", 0), ("rp-expiry", 1)}
    r = call(dlog, "GET", idle.path + "/assignments")
    assert r.status_code == 404 and r.json()["error_code"] == 40403
