"""What a consumer instance reads and commits: at-least-once replay of exactly the
uncommitted range after a crash, auto.offset.reset (earliest, latest, none), auto-commit
(4.19: at a poll, the positions the previous polls reached), max_bytes."""
from __future__ import annotations

import pytest

from tests.groups.conftest import error_of, values


# ------------------------------------------------------------------------ at-least-once
@pytest.mark.parametrize("crash", ["delete", "expire"])
def test_crash_before_commit_replays_exactly_the_uncommitted_range(
        consumer, create_topic, produce_json, server, clock, crash):
    """Process, then commit (4.19): the instance dies after processing records 5..9 and before
    committing them; the next instance of the group gets exactly 5..9 again, then new data."""
    create_topic("payments")
    produce_json("payments", [f"pay-{i}" for i in range(10)])
    first = consumer("billing", "worker-1", auto_offset_reset="earliest", auto_commit_enable="false")
    first.subscribe("payments")
    batch = first.poll(max_bytes=5 * len('"pay-0"'))
    assert values(batch) == [f"pay-{i}" for i in range(5)]
    first.commit_ok({"offsets": [{"topic": "payments", "partition": 0, "offset": batch[-1]["offset"]}]})
    processed = values(first.drain())  # "charged", then the process dies before committing
    assert processed == [f"pay-{i}" for i in range(5, 10)]
    if crash == "delete":
        first.delete()  # closing without auto-commit commits nothing
    else:
        clock.advance(server.config.consumer_instance_timeout_ms + 1)
        assert server.group_coordinator.expire_instances() == 1
    produce_json("payments", ["pay-10"])
    second = consumer("billing", "worker-2", auto_offset_reset="earliest", auto_commit_enable="false")
    second.subscribe("payments")
    assert second.committed(("payments", 0)) == {("payments", 0): 5}
    assert values(second.drain()) == [f"pay-{i}" for i in range(5, 11)]


def test_at_most_once_commit_first_loses_the_batch_on_a_crash(consumer, create_topic, produce_json):
    """Commit, then process (4.18): a crash after the commit loses the batch for the group."""
    create_topic("t")
    produce_json("t", list(range(6)))
    first = consumer("g", "w1", auto_offset_reset="earliest", auto_commit_enable="false")
    first.subscribe("t")
    batch = first.poll(max_bytes=3)  # values 0, 1, 2 (one byte each)
    assert values(batch) == [0, 1, 2]
    first.commit_ok()  # commit first...
    first.delete()  # ...then die before processing
    second = consumer("g", "w2", auto_offset_reset="earliest", auto_commit_enable="false")
    second.subscribe("t")
    assert values(second.drain()) == [3, 4, 5]


@pytest.mark.parametrize("close", ["delete", "expire"])
def test_closing_with_auto_commit_commits_positions(consumer, create_topic, produce_json, server, clock, close):
    """Kafka's close() commits the positions when auto-commit is on; the REST Proxy closes an
    expired instance the same way as a deleted one."""
    create_topic("t")
    produce_json("t", list(range(4)))
    first = consumer("g", "w1", auto_offset_reset="earliest")
    first.subscribe("t")
    assert values(first.drain()) == [0, 1, 2, 3]
    if close == "delete":
        first.delete()
    else:
        clock.advance(server.config.consumer_instance_timeout_ms + 1)
        assert server.group_coordinator.expire_instances() == 1
    second = consumer("g", "w2", auto_offset_reset="earliest")
    second.subscribe("t")
    assert second.drain() == []
    assert second.committed(("t", 0)) == {("t", 0): 4}


# ------------------------------------------------------------------------ auto.offset.reset
def test_auto_offset_reset_earliest_latest_none(consumer, create_topic, produce_json):
    create_topic("t")
    produce_json("t", ["old-1", "old-2"])
    earliest = consumer("g-earliest", "c", auto_offset_reset="earliest")
    latest = consumer("g-latest", "c", auto_offset_reset="latest")
    default = consumer("g-default", "c")  # Kafka's default is latest
    none = consumer("g-none", "c", auto_offset_reset="none")
    for c in (earliest, latest, default, none):
        c.subscribe("t")
    assert values(earliest.poll()) == ["old-1", "old-2"]
    assert latest.poll() == [] and default.poll() == []  # their positions are looked up now: the end
    body = error_of(none.poll_response(), 416)
    assert body["kafka_error"] == "OFFSET_OUT_OF_RANGE" and "auto.offset.reset is none" in body["message"]
    produce_json("t", ["new"])
    assert values(latest.poll()) == ["new"]
    assert values(default.poll()) == ["new"]
    assert values(earliest.poll()) == ["new"]
    # none: a seek gives a position; or a committed offset does.
    none.seek("t", 0, 1)
    assert values(none.poll()) == ["old-2", "new"]
    none.commit_ok()
    again = consumer("g-none", "c2", auto_offset_reset="none")
    none.delete()
    again.subscribe("t")
    assert again.poll() == []
    produce_json("t", ["newer"])
    assert values(again.poll()) == ["newer"]


def test_committed_offset_wins_over_auto_offset_reset(consumer, create_topic, produce_json):
    create_topic("t")
    produce_json("t", list(range(5)))
    c = consumer("g", "c", auto_offset_reset="earliest")
    c.assign(("t", 0))
    c.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 2}]})
    for reset in ("earliest", "latest", "none"):
        c2 = consumer("g", f"c-{reset}", auto_offset_reset=reset)
        c2.assign(("t", 0))
        assert values(c2.poll()) == [3, 4], reset


def test_out_of_range_after_retention_resets_to_earliest(consumer, create_topic, produce_json, server, clock):
    create_topic("t", retention_ms="1000")
    produce_json("t", list(range(3)))
    c = consumer("g", "c", auto_offset_reset="earliest", auto_commit_enable="false")
    c.assign(("t", 0))
    c.commit_ok({"partitions": [{"topic": "t", "partition": 0, "offset": 1}]})
    clock.advance(5000)
    produce_json("t", [3])
    assert server.log_manager.apply_retention() >= 3  # offsets 0..2 are gone
    c2 = consumer("g", "c2", auto_offset_reset="earliest")
    c2.assign(("t", 0))
    assert c2.poll() == []  # committed 1 is below the log start: reset to it
    assert values(c2.poll()) == [3]


# ------------------------------------------------------------------------ auto-commit
def test_auto_commit_commits_what_previous_polls_reached_at_the_next_poll(
        consumer, create_topic, produce_json, clock):
    create_topic("t")
    produce_json("t", list(range(3)))
    c = consumer("g", "c", auto_offset_reset="earliest", auto_commit_interval_ms="5000")
    c.subscribe("t")
    assert values(c.poll()) == [0, 1, 2]
    assert c.committed(("t", 0)) == {("t", 0): -1}  # not due yet
    produce_json("t", [3, 4])
    clock.advance(5000)
    assert values(c.poll()) == [3, 4]
    # The due poll committed the position the previous poll reached (3), not what it returns.
    assert c.committed(("t", 0)) == {("t", 0): 3}
    clock.advance(1000)
    c.poll()
    assert c.committed(("t", 0)) == {("t", 0): 3}  # the next commit is 5 s after the last one
    clock.advance(4000)
    c.poll()
    assert c.committed(("t", 0)) == {("t", 0): 5}


def test_auto_commit_disabled_never_commits(consumer, create_topic, produce_json, clock):
    create_topic("t")
    produce_json("t", list(range(3)))
    c = consumer("g", "c", auto_offset_reset="earliest", auto_commit_enable=False)
    c.subscribe("t")
    c.drain()
    clock.advance(60_000)
    c.poll()
    assert c.committed(("t", 0)) == {("t", 0): -1}


def test_auto_commit_on_revocation(consumer, create_topic, produce_json, check_partitioned):
    """A rebalance commits the positions of the partitions an auto-committing member loses,
    so their new owner continues where it stopped."""
    create_topic("t", partitions=2)
    produce_json("t", ["p0-a", "p0-b"], partition=0)
    produce_json("t", ["p1-a", "p1-b"], partition=1)
    a = consumer("g", "a", auto_offset_reset="earliest", client_id="a")
    a.subscribe("t")
    assert sorted(values(a.drain())) == ["p0-a", "p0-b", "p1-a", "p1-b"]
    b = consumer("g", "b", auto_offset_reset="earliest", client_id="b")
    b.subscribe("t")
    assert check_partitioned([a, b], {("t", 0), ("t", 1)}) == {"a": {("t", 0)}, "b": {("t", 1)}}
    assert b.committed(("t", 0), ("t", 1)) == {("t", 0): -1, ("t", 1): 2}
    assert b.drain() == []


# ------------------------------------------------------------------------ max_bytes
def test_max_bytes_is_honoured_across_partitions_and_at_least_one_record_is_returned(
        consumer, create_topic, produce_json):
    create_topic("t", partitions=2)
    record = "x" * 98  # stored as a 100-byte JSON string
    produce_json("t", [record] * 3, partition=0)
    produce_json("t", [record] * 3, partition=1)
    c = consumer("g", "c", auto_offset_reset="earliest")
    c.assign(("t", 0), ("t", 1))
    seen = []
    for max_bytes, expected in ((250, 2), (150, 1), (99, 1), (1000, 2)):
        got = c.poll(max_bytes=max_bytes)
        assert len(got) == expected, (max_bytes, [(r["partition"], r["offset"]) for r in got])
        seen += [(r["partition"], r["offset"]) for r in got]
    # Nothing skipped, nothing twice: the record that did not fit is the next one returned.
    assert sorted(seen) == [(p, o) for p in (0, 1) for o in range(3)]


def test_max_bytes_query_is_capped_by_consumer_request_max_bytes(consumer, create_topic, server):
    create_topic("t")
    c = consumer("g", "c")
    c.subscribe("t")
    limit = server.config.consumer_request_max_bytes
    assert c.poll_response(max_bytes=limit).status_code == 200
    error_of(c.poll_response(max_bytes=limit + 1), 400)


def test_records_without_bytes_do_not_wait_for_fetch_min_bytes(consumer, create_topic, client):
    """A record with a null value and no key still counts as data for fetch.min.bytes=1: the
    poll returns it at once instead of waiting out its timeout."""
    import orjson

    create_topic("t")
    r = client.post("/topics/t/partitions/0", content_type="application/vnd.kafka.binary.v2+json",
                    data=orjson.dumps({"records": [{"value": None}]}))
    assert r.status_code == 200
    c = consumer("g", "c", format="binary", auto_offset_reset="earliest")
    c.subscribe("t")
    polls = []
    fetcher = c.client.application.extensions["dlog"].consumer_fetcher
    original = fetcher._wait_for_data
    fetcher._wait_for_data = lambda *a, **kw: polls.append(1) or original(*a, **kw)
    try:
        got = c.poll(timeout=1000)
    finally:
        fetcher._wait_for_data = original
    assert [(x["offset"], x["value"]) for x in got] == [(0, None)]
    assert polls == []  # it never waited
