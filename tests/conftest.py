"""Shared fixtures of the in-process suite: a started ``DlogServer`` on a temporary data
directory with a ``MockClock`` (``data_dir``, ``clock``, ``config``, ``server``), its Flask app
and test client (``app``, ``client``, ``cluster_id``), and helpers (``create_topic``,
``produce``, ``fetch``, ``log_end_offsets``, ``shrink_isr``).

``--run-slow`` enables the tests marked ``slow`` (declared in setup.cfg).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from service.clock import MockClock
from service.config import Config
from service.controller import TopicMetadata
from service.server import DlogServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (full-size reliability runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def clock() -> MockClock:
    return MockClock()


@pytest.fixture
def config(data_dir, request) -> Config:
    """Three brokers, defaults otherwise (as ``dlog serve`` starts). Override settings with
    ``@pytest.mark.parametrize("config", [{"acks": "all"}], indirect=True)``."""
    return Config(data_dir=data_dir, brokers=3, **getattr(request, "param", {}))


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory) -> Path:
    """A data directory migrated and bootstrapped once per session (3 brokers): copying it is
    much cheaper than running Alembic on four files for every test. Migrations themselves are
    tested in tests/unit/test_migrations.py."""
    d = tmp_path_factory.mktemp("template") / "data"
    s = DlogServer(Config(data_dir=str(d), brokers=3), MockClock())
    s.start_up(background=False)
    s.shut_down()
    return d


@pytest.fixture
def server(config, clock, request):
    """A started ``DlogServer`` (no background thread: tests drive duties themselves)."""
    migrate = True
    if config.brokers == 3 and config.cluster_id is None and not os.path.exists(config.data_dir):
        shutil.copytree(request.getfixturevalue("_migrated_template"), config.data_dir)
        migrate = False
    s = DlogServer(config, clock)
    s.start_up(migrate=migrate, background=False)
    try:
        yield s
    finally:
        s.shut_down()


@pytest.fixture
def cluster_id(server) -> str:
    return server.controller.image().cluster_id


@pytest.fixture
def app(server):
    from service.api import create_app

    return create_app(server=server)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def create_topic(server) -> Callable[..., TopicMetadata]:
    """``create_topic(name, partitions=1, replication_factor=1, **configs)``; config names
    use underscores for dots (``retention_ms="1000"``)."""

    def create(name: str, partitions: int = 1, replication_factor: int = 1, **configs: str) -> TopicMetadata:
        return server.controller.create_topic(
            name, partitions, replication_factor, [(k.replace("_", "."), v) for k, v in configs.items()])

    return create


@pytest.fixture
def produce(server):
    """``produce(topic, values_or_records, partition=0, acks=Acks.LEADER)`` -> LogAppendInfo.

    Plain ``bytes`` become value-only records; a ``Record`` is appended as is. A partition
    error is raised, as the API layer would answer it.
    """
    from service.types import Acks, Record

    def produce(topic_name: str, records, partition: int = 0, acks: Acks = Acks.LEADER):
        topic = server.controller.topic(topic_name)
        batch = [r if isinstance(r, Record) else Record(None, None, r, None) for r in records]
        result = server.replica_manager.append_records(topic, {partition: batch}, acks)[partition]
        if isinstance(result, Exception):
            raise result
        return result

    return produce


@pytest.fixture
def fetch(server):
    """``fetch(topic, partition, offset, max_bytes=1 MiB)`` -> FetchDataInfo from the leader."""

    def fetch(topic_name: str, partition: int, offset: int, max_bytes: int = 1024 * 1024):
        topic = server.controller.topic(topic_name)
        return server.replica_manager.fetch(topic, partition, offset, max_bytes)

    return fetch


@pytest.fixture
def log_end_offsets(server):
    """``log_end_offsets()`` -> {(broker, topic_id, partition): (log_start, log_end, hw)} over
    every log of every broker file, plus the controller's metadata version under key
    ``"metadata_version"``: equal snapshots mean nothing was written."""
    from service import log as unified_log

    def snapshot() -> dict:
        image = server.controller.image()
        state: dict = {"metadata_version": image.version, "topics": sorted(image.topics)}
        for b in server.controller.broker_ids():
            with server.db.read(server.db.broker(b)) as conn:
                for row in unified_log.all_logs(conn):
                    state[(b, row.topic_id, row.partition_id)] = (
                        row.log_start_offset, row.log_end_offset, row.high_watermark)
        return state

    return snapshot


@pytest.fixture
def shrink_isr(server):
    """``shrink_isr(topic)``: arrange what Kafka reaches when every follower fell behind, an
    ISR of the leader alone, for each partition of ``topic``; returns the fresh metadata."""
    import orjson
    from sqlalchemy import update

    from service import schema

    def shrink(topic_name: str) -> TopicMetadata:
        topic = server.controller.topic(topic_name)
        p = schema.partition
        with server.db.write(server.db.controller) as conn:
            for state in topic.partitions:
                conn.execute(update(p).where(p.c.topic_id == topic.topic_id, p.c.partition_id == state.partition_id)
                             .values(isr=orjson.dumps([state.leader]).decode()))
            conn.execute(update(schema.cluster).values(metadata_version=schema.cluster.c.metadata_version + 1))
        return server.controller.topic(topic_name)

    return shrink
