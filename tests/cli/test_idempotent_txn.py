"""``dlog produce --idempotent`` and ``--transactional-id`` against a real server (behind a fault
proxy where a failure has to be staged)."""
from __future__ import annotations

import json

import pytest
import requests

from cli.http import Client, DlogHTTPError
from cli.partitioner import StickyPartitioner, murmur2, partition_for_key
from cli.producer import ProducerSession
from tests.cli.conftest import Proxy

# Kafka's UtilsTest.testMurmur2 vectors.
VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def consume_json(dlog, topic: str, *args: str) -> list[dict]:
    result = dlog("consume", topic, "--json", "-e", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def values(records: list[dict]) -> list[str]:
    return [r["value"] for r in records]


# ---------------------------------------------------------------------------- partitioner
@pytest.mark.parametrize("data,expected", VECTORS)
def test_murmur2_matches_kafka(data, expected):
    assert murmur2(data) == expected
    assert partition_for_key(data, 7) == (expected & 0x7FFFFFFF) % 7


def test_sticky_partitioner():
    s = StickyPartitioner(4)
    first = s.partition(None)
    assert s.partition(None) == first  # unkeyed records stay on one partition per batch
    s.next_batch()
    assert s.partition(None) == (first + 1) % 4
    assert s.partition(b"foobar") == partition_for_key(b"foobar", 4)
    assert StickyPartitioner(4, explicit=2).partition(b"foobar") == 2


# ---------------------------------------------------------------------------- idempotent
def test_idempotent_keys_land_where_the_server_puts_them(dlog, make_topic, topic_name):
    make_topic(topic_name, 5)
    lines = "".join(f"key-{i}:v{i}\n" for i in range(40))
    plain = dlog("produce", topic_name, "-k", ":", "--json", input=lines)
    idem = dlog("produce", topic_name, "-k", ":", "--json", "--idempotent", "--batch-size", "7", input=lines)
    assert plain.exit_code == 0 and idem.exit_code == 0, idem.output
    server_side = [json.loads(x)["partition"] for x in plain.stdout.splitlines()]
    client_side = [json.loads(x)["partition"] for x in idem.stdout.splitlines()]
    assert client_side == server_side  # murmur2 here == murmur2 there
    assert json.loads(idem.stderr)["producer"]["retries"] == 0
    text = dlog("produce", topic_name, "-k", ":", "--idempotent", input="a:1\n")
    assert "idempotent: producer" in text.stderr and "0 retries" in text.stderr
    summary = json.loads(dlog("produce", topic_name, "--idempotent", "--json", "-p", "3", input="x\n").stderr)
    assert summary["producer"]["producer_id"] >= 0 and summary["partitions"] == {"3": summary["partitions"]["3"]}


def test_same_request_twice_writes_once(dlog, dlog_url, make_topic, topic_name):
    """A retry is the same body: dlog answers it with the original offsets."""
    make_topic(topic_name, 3)
    with Client(dlog_url) as client:
        session = ProducerSession(client, topic_name, 3, params={"acks": "all"})
        session.init()
        records = [({"key": {"type": "STRING", "data": f"k{i}"}, "value": {"type": "STRING", "data": f"v{i}"}},
                    f"k{i}".encode()) for i in range(10)]
        body, parts = session.build(records)
        first = session.post(body, parts)
        session.sequences.clear()  # as if the first answer had been lost: the same sequences again
        again = session.post(body, parts)
        assert [(r["partition_id"], r["offset"]) for r in again] == [(r["partition_id"], r["offset"]) for r in first]
        assert all(r.get("duplicate") for r in again) and not any(r.get("duplicate") for r in first)
        assert session.duplicates == 10
        session.send(records[:2])  # and the producer carries on after the duplicate
    got = consume_json(dlog, topic_name)
    assert sorted(values(got)) == sorted([f"v{i}" for i in range(10)] + ["v0", "v1"])


@pytest.mark.parametrize("failure", ["503 after writing", "connection dropped after writing"])
def test_retry_after_a_lost_answer_never_duplicates(proxy, dlog, make_topic, topic_name, failure):
    p, via_proxy, _ = proxy
    make_topic(topic_name, 2)
    produce_calls = []

    def hook(method, path, body, forward):
        if method == "POST" and path.endswith(f"/topics/{topic_name}/records"):
            produce_calls.append(body)
            if len(produce_calls) in (2, 3):  # the second batch: written, but the answer is lost twice
                forward()
                if failure.startswith("503"):
                    return 503, {"error_code": 503, "message": "injected", "kafka_error": "NOT_ENOUGH_REPLICAS"}
                return Proxy.DROP
        return None

    p.hook = hook
    lines = "".join(f"k{i}:v{i}\n" for i in range(9))
    result = via_proxy("produce", topic_name, "-k", ":", "--idempotent", "--batch-size", "3", "--json", input=lines)
    assert result.exit_code == 0, result.output
    assert len(produce_calls) == 5  # 3 batches + 2 retries
    assert produce_calls[1] == produce_calls[2] == produce_calls[3]  # a retry resends the same sequences
    assert result.stderr.count("retrying:") == 2
    reports = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["line"] for r in reports] == list(range(1, 10))
    assert [bool(r.get("duplicate")) for r in reports] == [False] * 3 + [True] * 3 + [False] * 3
    summary = result.stderr.splitlines()[-1]
    assert '"retries":2' in summary and '"duplicates":3' in summary
    got = consume_json(dlog, topic_name)
    assert sorted(values(got)) == [f"v{i}" for i in range(9)]  # each exactly once


def test_plain_produce_does_not_retry(proxy, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name)
    p.hook = lambda m, path, b, f: (503, {"error_code": 503, "message": "injected"}) if path.endswith("/records") \
        else None
    result = via_proxy("produce", topic_name, input="a\n")
    assert result.exit_code == 4 and "injected" in result.stderr
    assert sum(1 for m, path in p.requests if path.endswith("/records")) == 1


def test_plain_produce_with_a_dropped_connection_is_outcome_unknown(proxy, dlog, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name)

    def hook(method, path, body, forward):
        if path.endswith("/records"):
            forward()
            return Proxy.DROP
        return None

    p.hook = hook
    result = via_proxy("produce", topic_name, input="a\n")
    assert result.exit_code == 5
    assert "closed the connection before answering" in result.stderr
    assert "may or may not have been written" in result.stderr
    assert values(consume_json(dlog, topic_name)) == ["a"]  # it was, this time


def test_idempotent_gives_up_on_a_client_error(proxy, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name)
    p.hook = lambda m, path, b, f: (409, {"error_code": 409, "message": "Out of order sequence",
                                          "kafka_error": "OUT_OF_ORDER_SEQUENCE_NUMBER"}) \
        if path.endswith("/records") else None
    result = via_proxy("produce", topic_name, "--idempotent", input="a\nb\n")
    assert result.exit_code == 2
    assert "OUT_OF_ORDER_SEQUENCE_NUMBER" in result.stderr and "were not written" in result.stderr
    assert sum(1 for m, path in p.requests if path.endswith("/records")) == 1


def test_delivery_timeout_bounds_the_retries(proxy, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name)
    p.hook = lambda m, path, b, f: (504, {"error_code": 504, "message": "slow", "kafka_error": "REQUEST_TIMED_OUT"}) \
        if path.endswith("/records") else None
    result = via_proxy("produce", topic_name, "--idempotent", "--delivery-timeout-ms", "300", input="a\n")
    assert result.exit_code == 5 and "REQUEST_TIMED_OUT" in result.stderr
    assert "may or may not have been written" in result.stderr
    assert sum(1 for m, path in p.requests if path.endswith("/records")) >= 2


def test_idempotent_usage_errors(dlog, make_topic, topic_name):
    make_topic(topic_name, 2)
    assert dlog("produce", topic_name, "--idempotent", "--acks", "1", input="a\n").exit_code == 2
    assert dlog("produce", topic_name, "--commit-every", "3", input="a\n").exit_code == 2
    assert dlog("produce", topic_name, "--commit-interval-ms", "3", "--idempotent", input="a\n").exit_code == 2
    result = dlog("produce", topic_name, "--idempotent", "-p", "2", input="a\n")
    assert result.exit_code == 3 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr


# ---------------------------------------------------------------------------- transactional
def _committed_count(url: str, topic: str, partitions: int) -> int:
    total = 0
    for p in range(partitions):
        resp = requests.get(f"{url}/topics/{topic}/partitions/{p}/records",
                            params={"offset": 0, "isolation_level": "read_committed"},
                            headers={"Accept": "application/vnd.kafka.binary.v2+json"}, timeout=10)
        assert resp.status_code == 200, resp.text
        total += len(resp.json())
    return total


def test_transactional_records_are_visible_to_read_committed_only_after_commit(dlog, dlog_url, make_topic,
                                                                               topic_name):
    make_topic(topic_name, 2)
    tid = f"tx-{topic_name}"
    with Client(dlog_url) as client:
        session = ProducerSession(client, topic_name, 2, transactional_id=tid, params={"acks": "all"})
        session.init()
        epoch = session.producer_epoch
        session.send([({"value": {"type": "STRING", "data": f"v{i}"}}, f"k{i}".encode()) for i in range(6)])
        assert values(consume_json(dlog, topic_name, "--isolation", "read_committed")) == []
        assert len(consume_json(dlog, topic_name)) == 6  # read_uncommitted sees the open transaction
        described = dlog("txn", "describe", tid)
        assert described.exit_code == 0 and "Ongoing" in described.stdout and topic_name in described.stdout
        answer = session.commit()
        assert answer["state"] in ("CompleteCommit", "PrepareCommit")
        assert session.producer_epoch == epoch + 1 and session.sequences == {}
        assert sorted(values(consume_json(dlog, topic_name, "--read-committed"))) == [f"v{i}" for i in range(6)]
        assert session.commit() is None  # nothing open: nothing to commit


def test_cli_transactions_commit_every_n(proxy, dlog, dlog_url, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name, 2)
    tid = f"tx-{topic_name}"
    seen_at_commit = []

    def hook(method, path, body, forward):
        if path.endswith(f"/transactions/{tid}:commit"):
            seen_at_commit.append(_committed_count(dlog_url, topic_name, 2))
        return None

    p.hook = hook
    lines = "".join(f"k{i}:v{i}\n" for i in range(7))
    result = via_proxy("produce", topic_name, "-k", ":", "--transactional-id", tid, "--commit-every", "3",
                       "--batch-size", "2", "--json", input=lines)
    assert result.exit_code == 0, result.output
    assert seen_at_commit == [0, 3, 6]  # before each commit, read_committed sees only the earlier transactions
    summary = json.loads(result.stderr.splitlines()[-1])
    assert summary["producer"]["commits"] == 3 and summary["producer"]["transactional_id"] == tid
    got = consume_json(dlog, topic_name, "--isolation", "read_committed")
    assert sorted(values(got)) == [f"v{i}" for i in range(7)]
    described = json.loads(dlog("txn", "describe", tid, "--json").stdout)
    assert described["state"] == "CompleteCommit" and described["producer_epoch"] == summary["producer"][
        "producer_epoch"]
    listed = dlog("txn", "list")
    assert listed.exit_code == 0 and tid in listed.stdout and "TRANSACTIONAL-ID" in listed.stdout


def test_cli_transaction_commit_interval(dlog, make_topic, topic_name):
    make_topic(topic_name)
    tid = f"tx-{topic_name}"
    result = dlog("produce", topic_name, "--transactional-id", tid, "--commit-interval-ms", "1", "--batch-size", "1",
                  "--json", input="a\nb\nc\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stderr.splitlines()[-1])["producer"]["commits"] == 3
    assert values(consume_json(dlog, topic_name, "--isolation", "read_committed")) == ["a", "b", "c"]


def test_cli_transaction_aborted_on_failure(proxy, dlog, make_topic, topic_name):
    p, via_proxy, _ = proxy
    make_topic(topic_name)
    tid = f"tx-{topic_name}"
    calls = []

    def hook(method, path, body, forward):
        if path.endswith(f"/topics/{topic_name}/records"):
            calls.append(body)
            if len(calls) == 5:
                return 400, {"error_code": 400, "message": "injected refusal"}
        return None

    p.hook = hook
    result = via_proxy("produce", topic_name, "--transactional-id", tid, "--commit-every", "3", "--batch-size", "1",
                       input="".join(f"v{i}\n" for i in range(6)))
    assert result.exit_code == 2 and "injected refusal" in result.stderr
    assert "1 transactions committed; the open one was aborted (1 records discarded)" in result.stderr
    assert values(consume_json(dlog, topic_name, "--isolation", "read_committed")) == ["v0", "v1", "v2"]
    assert json.loads(dlog("txn", "describe", tid, "--json").stdout)["state"] == "CompleteAbort"


def test_a_second_instance_fences_the_first(dlog_url, make_topic, topic_name):
    make_topic(topic_name)
    tid = f"tx-{topic_name}"
    with Client(dlog_url) as client:
        first = ProducerSession(client, topic_name, 1, transactional_id=tid)
        first.init()
        first.send([({"value": {"type": "STRING", "data": "a"}}, None)])
        second = ProducerSession(client, topic_name, 1, transactional_id=tid)
        second.init()
        with pytest.raises(DlogHTTPError) as caught:
            first.send([({"value": {"type": "STRING", "data": "b"}}, None)])
        assert caught.value.kafka_error in ("PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH")


def test_txn_errors(dlog, topic_name):
    result = dlog("txn", "describe", f"none-{topic_name}")
    assert result.exit_code == 3 and "TRANSACTIONAL_ID_NOT_FOUND" in result.stderr


def test_commit_interval_commits_while_the_input_is_idle(dlog, make_topic, topic_name, monkeypatch):
    """Lines arrive with pauses longer than the interval: each pause commits the open transaction."""
    import io
    import time

    class Slow(io.RawIOBase):
        def __init__(self, lines):
            self.lines = list(lines)

        def readable(self):
            return True

        def readline(self, size=-1):
            if not self.lines:
                return b""
            time.sleep(0.3)
            return self.lines.pop(0)

        def __iter__(self):
            return iter(self.readline, b"")

    make_topic(topic_name)
    tid = f"tx-{topic_name}"
    monkeypatch.setattr("cli.produce.input_size", lambda stream: None)
    import click

    monkeypatch.setattr(click.File, "convert", lambda self, value, param, ctx: Slow([b"a\n", b"b\n", b"c\n"]))
    result = dlog("produce", topic_name, "--transactional-id", tid, "--commit-interval-ms", "100", "--linger-ms", "10",
                  "--json", "-f", "ignored")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stderr.splitlines()[-1])["producer"]["commits"] == 3  # one per pause, none empty
    assert values(consume_json(dlog, topic_name, "--isolation", "read_committed")) == ["a", "b", "c"]
