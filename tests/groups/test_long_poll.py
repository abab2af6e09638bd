"""Long polls on the real clock: ``GET .../records`` returns as soon as data arrives (a
produce or a transaction commit from another thread), or with ``[]`` after its timeout."""
from __future__ import annotations

import threading
import time

import orjson
import pytest

from service.clock import Clock
from tests.groups.conftest import V2_EMBEDDED_JSON, values


@pytest.fixture
def clock():
    """The system clock: these tests measure real waiting."""
    return Clock()


def _produce_later(app, delay: float, topic: str, value) -> threading.Thread:
    def run():
        time.sleep(delay)
        r = app.test_client().post(f"/topics/{topic}", data=orjson.dumps({"records": [{"value": value}]}),
                                   content_type=V2_EMBEDDED_JSON, query_string={"acks": "1"})
        assert r.status_code == 200, r.get_data(as_text=True)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_long_poll_returns_as_soon_as_data_arrives(app, consumer, create_topic):
    create_topic("t", partitions=2)
    c = consumer("g", "c", auto_offset_reset="earliest")
    c.subscribe("t")
    assert c.poll() == []
    producer = _produce_later(app, 0.3, "t", "hello")
    start = time.monotonic()
    got = c.poll(timeout=10_000)
    elapsed = time.monotonic() - start
    producer.join(5)
    assert values(got) == ["hello"]
    assert 0.25 <= elapsed < 3.0, elapsed  # woke on the produce, not at the 10 s timeout


def test_long_poll_with_no_data_answers_empty_after_its_timeout(consumer, create_topic):
    create_topic("t")
    c = consumer("g", "c", consumer_request_timeout_ms=300)
    c.subscribe("t")
    c.poll()
    start = time.monotonic()
    assert c.poll(timeout=400) == []
    assert 0.35 <= time.monotonic() - start < 3.0
    start = time.monotonic()
    assert c.poll(timeout=None) == []  # no ?timeout=: the instance's consumer.request.timeout.ms
    assert 0.25 <= time.monotonic() - start < 3.0


def test_read_committed_long_poll_wakes_on_the_transaction_commit(app, consumer, create_topic, txn_producer):
    create_topic("t")
    c = consumer("g", "c", auto_offset_reset="earliest", isolation_level="read_committed")
    c.subscribe("t")
    tx = txn_producer("tx-1")
    tx.send("t", 0, "pending")
    assert c.poll() == []

    def commit_later():
        time.sleep(0.3)
        tx.client = app.test_client()
        tx.end(commit=True)

    committer = threading.Thread(target=commit_later, daemon=True)
    committer.start()
    start = time.monotonic()
    got = c.poll(timeout=10_000)
    elapsed = time.monotonic() - start
    committer.join(5)
    assert values(got) == ["pending"]
    assert 0.25 <= elapsed < 3.0, elapsed
