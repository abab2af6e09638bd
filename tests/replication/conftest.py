"""In-process replication fixtures: a DlogServer on a temp dir with a mock clock and no
background threads, so every replication step runs when the test says so."""
from __future__ import annotations

import pytest

from service.clock import MockClock
from service.config import Config
from service.server import DlogServer
from service.types import Acks, Record


class Cluster:
    def __init__(self, server: DlogServer, clock: MockClock) -> None:
        self.server = server
        self.clock = clock
        self.controller = server.controller
        self.rm = server.replica_manager

    def topic(self, name: str = "t"):
        return self.controller.topic(name)

    def state(self, name: str = "t", partition: int = 0):
        return self.topic(name).partition(partition)

    def produce(self, value: bytes, acks: Acks = Acks.LEADER, name: str = "t", partition: int = 0,
                timeout_ms: int = 1000):
        result = self.rm.append_records(self.topic(name), {partition: [Record(None, None, value, None)]},
                                        acks, timeout_ms)[partition]
        return result

    def replicate(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            self.rm.replicate_all()

    def values(self, broker_id: int, name: str = "t", partition: int = 0) -> list[tuple[int, bytes]]:
        """(offset, value) of every record in one broker's replica, read from its file."""
        from service import log as unified_log

        topic = self.topic(name)
        with self.server.db.read(self.server.db.broker(broker_id)) as conn:
            state = unified_log.load(conn, topic.topic_id, partition)
            if state is None:
                return []
            data = unified_log.read(conn, state, state.log_start_offset, 1 << 30, max_offset=state.log_end_offset)
        return [(r.offset, r.value) for r in data.records]

    def leader_offsets(self, name: str = "t", partition: int = 0):
        return self.rm.offsets(self.topic(name), partition)


@pytest.fixture
def cluster(tmp_path):
    clock = MockClock()
    server = DlogServer(Config(data_dir=str(tmp_path / "data"), brokers=3, sync="normal",
                               replica_lag_time_max_ms=10000), clock)
    server.start_up(background=False)
    yield Cluster(server, clock)
    server.shut_down()
