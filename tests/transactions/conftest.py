"""Fixtures of the transactions suite (kafka-semantics.md section 3, scenarios 7.16-7.32).

The in-process tests use the shared ``server`` fixture (a started ``DlogServer`` with a
``MockClock``, three brokers, no background thread) and drive it over HTTP through the Flask
test client, exactly as a REST client would:

- ``txn`` is a ``TxnApi``: InitProducerId, transactional produce, TxnOffsetCommit, EndTxn,
  describe, plain produce and the stateless read under either isolation level, plus direct
  looks at the files (every replica's raw log with its markers, LSO, committed offsets);
- ``txn.producer("tx")`` is a ``TxnProducer``: a transactional producer that keeps its producer
  id, epoch and per-partition sequences the way a Kafka client does. dlog bumps the epoch at
  every EndTxn (transactions V2, KIP-890), so after a commit or abort the producer adopts the
  returned epoch and its sequences restart at 0;
- ``crash_at`` makes a named crash point (service/faults.py) raise ``Crash`` in this process,
  and ``restart`` builds a new ``DlogServer`` on the same files: the in-process analogue of a
  kill -9 at that point followed by a restart (start-up recovery included). The real-process
  version is test_crash_points.py;
- ``config`` overrides the shared one with ``sync=normal`` (no fsync: these crashes are not
  power cuts);
- ``dlog_procs`` makes real ``dlog serve`` processes (``DlogProcess`` from tests/e2e) on copies
  of a migrated data directory, for test_crash_points.py and test_copier.py (whose HTTP and
  file helpers are in process.py).
"""
from __future__ import annotations

import struct
from typing import Any, Iterable

import orjson
import pytest
from sqlalchemy import select

from service import log as unified_log
from service import schema
from service.server import DlogServer

CONTROL_NAMES = {0: "ABORT", 1: "COMMIT"}
V2_EMBEDDED_JSON = "application/vnd.kafka.json.v2+json"
TOPIC = "t"


def kafka_error(resp) -> str | None:
    """The ``kafka_error`` name of an error response (None for a success)."""
    if resp.status_code < 400:
        return None
    return orjson.loads(resp.get_data()).get("kafka_error")


def assert_error(resp, name: str, status: int | None = None) -> dict:
    """The response is the Kafka error ``name`` (and HTTP ``status`` when given)."""
    body = orjson.loads(resp.get_data())
    assert resp.status_code >= 400 and body.get("kafka_error") == name, (resp.status_code, body)
    if status is not None:
        assert resp.status_code == status, (resp.status_code, body)
    return body


def assert_ok(resp) -> Any:
    assert resp.status_code in (200, 204), (resp.status_code, resp.get_data(as_text=True))
    return orjson.loads(resp.get_data()) if resp.status_code == 200 else None


class TxnProducer:
    """A transactional producer as a Kafka client keeps it: (producer id, epoch) from
    InitProducerId and one sequence per partition, starting at 0 in every epoch."""

    def __init__(self, api: "TxnApi", transactional_id: str, timeout_ms: int | None = None) -> None:
        self.api = api
        self.tid = transactional_id
        body = assert_ok(api.init(transactional_id, timeout_ms))
        self.pid: int = body["producer_id"]
        self.epoch: int = body["producer_epoch"]
        self.seq: dict[tuple[str, int], int] = {}

    def records(self, topic: str, partition: int, values: Iterable[Any], epoch: int | None = None,
                seq: int | None = None) -> list[dict]:
        start = self.seq.get((topic, partition), 0) if seq is None else seq
        return [{"partition_id": partition, "value": {"type": "JSON", "data": v}, "producer_id": self.pid,
                 "producer_epoch": self.epoch if epoch is None else epoch, "sequence": start + i,
                 "transactional_id": self.tid} for i, v in enumerate(values)]

    def send(self, topic: str, partition: int, *values: Any, epoch: int | None = None, seq: int | None = None):
        """One transactional produce to one partition; the sequence advances on success."""
        resp = self.api.produce(topic, self.records(topic, partition, values, epoch, seq))
        if resp.status_code == 200 and epoch is None and seq is None:
            self.seq[(topic, partition)] = self.seq.get((topic, partition), 0) + len(values)
        return resp

    def send_ok(self, topic: str, partition: int, *values: Any) -> list[int]:
        """Offsets of the records of a successful transactional produce."""
        resp = self.send(topic, partition, *values)
        reports = self.api.reports(resp)
        assert all(r["error_code"] == 200 for r in reports), reports
        return [r["offset"] for r in reports]

    def send_offsets(self, group: str, offsets: dict[tuple[str, int], int], epoch: int | None = None, **extra):
        return self.api.txn_offsets(self.tid, self.pid, self.epoch if epoch is None else epoch, group, offsets,
                                    **extra)

    def end(self, commit: bool, epoch: int | None = None):
        resp = self.api.end(self.tid, self.pid, self.epoch if epoch is None else epoch, commit)
        if resp.status_code == 200 and epoch is None:
            body = orjson.loads(resp.get_data())
            self.pid, self.epoch = body["producer_id"], body["producer_epoch"]
            self.seq = {}
        return resp

    def commit(self, epoch: int | None = None):
        return self.end(True, epoch)

    def abort(self, epoch: int | None = None):
        return self.end(False, epoch)

    def commit_ok(self) -> dict:
        body = assert_ok(self.commit())
        assert body["state"] == "CompleteCommit", body
        return body

    def abort_ok(self) -> dict:
        body = assert_ok(self.abort())
        assert body["state"] == "CompleteAbort", body
        return body


class TxnApi:
    """HTTP calls on the Flask test client, and direct looks at the server's files."""

    def __init__(self, client, server: DlogServer) -> None:
        self.client = client
        self.server = server
        self.cid = server.controller.image().cluster_id
        self.v3 = f"/v3/clusters/{self.cid}"

    # -------------------------------------------------------------- HTTP
    def init(self, transactional_id: str | None = None, timeout_ms: int | None = None, **extra):
        body: dict[str, Any] = dict(extra)
        if transactional_id is not None:
            body["transactional_id"] = transactional_id
        if timeout_ms is not None:
            body["transaction_timeout_ms"] = timeout_ms
        return self.client.post(f"{self.v3}/producers", json=body)

    def producer(self, transactional_id: str = "tx", timeout_ms: int | None = None) -> TxnProducer:
        return TxnProducer(self, transactional_id, timeout_ms)

    def produce(self, topic: str, records: list[dict], acks: str = "all"):
        return self.client.post(f"{self.v3}/topics/{topic}/records",
                                data=b" ".join(orjson.dumps(r) for r in records),
                                content_type="application/json", query_string={"acks": acks})

    @staticmethod
    def reports(resp) -> list[dict]:
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True))
        return [orjson.loads(line) for line in resp.get_data().split(b"\r\n") if line.strip()]

    def plain(self, topic: str, partition: int, *values: Any) -> list[int]:
        """A plain (non-transactional) acks=all produce; the offsets."""
        resp = self.produce(topic, [{"partition_id": partition, "value": {"type": "JSON", "data": v}}
                                    for v in values])
        return [r["offset"] for r in self.reports(resp)]

    def txn_offsets(self, transactional_id: str, pid: int, epoch: int, group: str,
                    offsets: dict[tuple[str, int], int], **extra):
        body = {"producer_id": pid, "producer_epoch": epoch, "consumer_group_id": group,
                "offsets": [{"topic_name": t, "partition_id": p, "offset": o} for (t, p), o in offsets.items()],
                **extra}
        return self.client.post(f"{self.v3}/transactions/{transactional_id}/offsets", json=body)

    def end(self, transactional_id: str, pid: int, epoch: int, commit: bool):
        verb = "commit" if commit else "abort"
        return self.client.post(f"{self.v3}/transactions/{transactional_id}:{verb}",
                                json={"producer_id": pid, "producer_epoch": epoch})

    def describe(self, transactional_id: str = "tx") -> dict:
        return assert_ok(self.client.get(f"{self.v3}/transactions/{transactional_id}"))

    def state(self, transactional_id: str = "tx") -> str:
        return self.describe(transactional_id)["state"]

    def read_page(self, topic: str, partition: int, offset: int, isolation: str, max_bytes: int = 1 << 20):
        """One stateless read: (records, the next offset the server says to read from)."""
        resp = self.client.get(f"/topics/{topic}/partitions/{partition}/records",
                               query_string={"offset": offset, "isolation_level": isolation, "max_bytes": max_bytes},
                               headers={"Accept": V2_EMBEDDED_JSON})
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True))
        return orjson.loads(resp.get_data()), int(resp.headers["X-Dlog-Next-Offset"])

    def read(self, topic: str, partition: int = 0, isolation: str = "read_committed",
             offset: int = 0, max_bytes: int = 1 << 20) -> list[tuple[int, Any]]:
        """(offset, value) of every record a reader of ``isolation`` sees from ``offset``, page
        by page, following the next offset the server gives (which moves past markers)."""
        out: list[tuple[int, Any]] = []
        while True:
            page, next_offset = self.read_page(topic, partition, offset, isolation, max_bytes)
            out += [(r["offset"], r["value"]) for r in page]
            if next_offset == offset:
                return out
            assert next_offset > offset
            offset = next_offset

    def values(self, topic: str, partition: int = 0, isolation: str = "read_committed") -> list[Any]:
        return [v for _o, v in self.read(topic, partition, isolation)]

    def next_offset(self, topic: str, partition: int = 0, isolation: str = "read_committed", offset: int = 0) -> int:
        """Where a reader that read everything it may see stands."""
        while True:
            _page, next_offset = self.read_page(topic, partition, offset, isolation)
            if next_offset == offset:
                return offset
            offset = next_offset

    # -------------------------------------------------------------- the files
    def offsets(self, topic: str = TOPIC, partition: int = 0):
        """LSO, HW, LEO and log start offset on the current leader."""
        return self.server.replica_manager.offsets(self.server.controller.topic(topic), partition)

    def lso(self, topic: str = TOPIC, partition: int = 0) -> int:
        return self.offsets(topic, partition).last_stable_offset

    def raw(self, topic: str = TOPIC, partition: int = 0, broker: int | None = None) -> list:
        """Every record row of one replica (the leader by default), control records included,
        read from its broker file: ``offset, producer_id, producer_epoch, sequence,
        is_transactional, is_control, key, value``."""
        topic_md = self.server.controller.topic(topic)
        state = topic_md.partition(partition)
        broker = state.leader if broker is None else broker
        db = self.server.db
        r = schema.record.c
        with db.read(db.broker(broker)) as conn:
            log_state = unified_log.load(conn, state.topic_id, partition)
            if log_state is None:
                return []
            return conn.execute(select(r.offset, r.producer_id, r.producer_epoch, r.sequence, r.is_transactional,
                                       r.is_control, r.key, r.value)
                                .where(r.log_id == log_state.log_id).order_by(r.offset)).all()

    def markers(self, topic: str = TOPIC, partition: int = 0, broker: int | None = None) -> list[tuple[int, str, int]]:
        """(offset, "COMMIT"|"ABORT", producer epoch) of the control records of one replica."""
        return [(r.offset, CONTROL_NAMES[struct.unpack(">hh", r.key)[1]], r.producer_epoch)
                for r in self.raw(topic, partition, broker) if r.is_control]

    def data(self, topic: str = TOPIC, partition: int = 0, broker: int | None = None) -> list[tuple[int, Any]]:
        """(offset, value) of the data records of one replica, whatever their transaction did."""
        return [(r.offset, orjson.loads(r.value)) for r in self.raw(topic, partition, broker) if not r.is_control]

    def committed(self, group: str, partitions: list[tuple[str, int]] | None = None,
                  stable: bool = False) -> dict[tuple[str, int], int]:
        found = self.server.offset_manager.fetch_offsets(group, partitions, require_stable=stable)
        return {tp: o.offset for tp, o in found.items()}


@pytest.fixture
def config(data_dir, request):
    """As the shared fixture (three brokers, defaults), but with ``sync=normal``: these tests
    crash by exception, never by power cut, and fsyncs only slow them down."""
    from service.config import Config

    return Config(data_dir=data_dir, brokers=3, sync="normal", **getattr(request, "param", {}))


@pytest.fixture
def txn(client, server) -> TxnApi:
    return TxnApi(client, server)


@pytest.fixture
def topic(create_topic):
    """Topic ``t`` with 3 partitions, replication factor 3 (min.insync.replicas 2)."""
    return create_topic(TOPIC, 3, 3)


# ---------------------------------------------------------------------------- in-process crashes
class Crash(BaseException):
    """Raised at a named crash point: the process "dies" there (nothing after it runs).

    A BaseException, so no ``except Exception`` on the way up can swallow it, as nothing can
    catch a kill -9."""


@pytest.fixture
def crash_at(monkeypatch):
    """``crash_at("txn.after_marker", nth=1)``: the ``nth`` time the named point is reached
    in this process, raise ``Crash``; ``crash_at(None)`` disarms."""
    import service.replica_manager
    import service.transactions.coordinator

    armed: dict[str, Any] = {"name": None, "left": 0}

    def fake_crash_point(name: str) -> None:
        if name == armed["name"]:
            armed["left"] -= 1
            if armed["left"] == 0:
                armed["name"] = None
                raise Crash(name)

    monkeypatch.setattr(service.transactions.coordinator, "crash_point", fake_crash_point)
    monkeypatch.setattr(service.replica_manager, "crash_point", fake_crash_point)

    def arm(name: str | None, nth: int = 1) -> None:
        armed["name"], armed["left"] = name, nth

    return arm


@pytest.fixture
def restart():
    """``restart(server)`` -> (new server, new TxnApi): the old server is dropped without any
    further step (as after a kill -9) and a new one starts on the same files and clock, running
    start-up recovery."""
    from service.api import create_app

    made: list[DlogServer] = []

    def do(old: DlogServer) -> tuple[DlogServer, TxnApi]:
        old.shut_down()
        new = DlogServer(old.config, old.clock)
        new.start_up(migrate=False, background=False)
        made.append(new)
        return new, TxnApi(create_app(server=new).test_client(), new)

    yield do
    for s in made:
        s.shut_down()


# ---------------------------------------------------------------------------- real processes
@pytest.fixture(scope="session")
def _dlog_data_template(tmp_path_factory):
    """A data directory created and migrated once per session (three brokers, system clock):
    copying it saves each real-process test the migrations of its first start."""
    from service.config import Config

    d = tmp_path_factory.mktemp("txn-template") / "data"
    s = DlogServer(Config(data_dir=str(d), brokers=3))
    s.start_up(background=False)
    s.shut_down()
    return d


@pytest.fixture
def dlog_procs(tmp_path, _dlog_data_template):
    """Make ``DlogProcess`` objects (tests/e2e/conftest.py; not started) under ``tmp_path``:
    ``dlog_procs(name="data", **kw)``, on a copy of a migrated three-broker data directory.
    Every one is killed (SIGKILL to its process group, which also ends a SIGSTOPped master) at
    the end of the test."""
    import shutil

    from tests.e2e.conftest import DlogProcess

    made: list[DlogProcess] = []

    def make(name: str = "data", **kw) -> DlogProcess:
        kw.setdefault("log_path", tmp_path / f"{name}.log")
        shutil.copytree(_dlog_data_template, tmp_path / name)
        p = DlogProcess(tmp_path / name, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill9()
