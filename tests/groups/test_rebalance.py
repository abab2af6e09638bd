"""Group membership: instances share a topic's partitions without overlap through every
rebalance (join, leave, expiry, partitions added, a new topic matching a pattern), each
poll returns records only of partitions its instance owns, and commits from an instance that
has not seen the latest generation are refused (REBALANCE_IN_PROGRESS)."""
from __future__ import annotations

from tests.groups.conftest import by_partition, error_of, values


def _all(topic: str, n: int) -> set[tuple[str, int]]:
    return {(topic, p) for p in range(n)}


def _fill(produce_json, topic: str, partitions: int, per_partition: int, start: int = 0) -> set:
    """``per_partition`` records on each partition, with values unique across the test."""
    produced = set()
    for p in range(partitions):
        vals = [f"{p}-{start + i}" for i in range(per_partition)]
        produce_json(topic, vals, partition=p)
        produced.update(vals)
    return produced


def _generation(server, group: str) -> int:
    return server.group_coordinator.describe_group(group).generation_id


def test_two_then_three_instances_share_partitions_and_every_record_is_delivered_once(
        consumer, create_topic, produce_json, check_partitioned, server):
    """Instances join one by one, one leaves: at every step the assignment partitions the
    topic, polls only return owned partitions, and (auto-commit on revocation) no record is
    delivered twice or lost."""
    create_topic("t", partitions=5)
    parts = _all("t", 5)
    delivered: list = []
    produced = set()

    a = consumer("g", "a", auto_offset_reset="earliest")
    a.subscribe("t")
    check_partitioned([a], parts)
    produced |= _fill(produce_json, "t", 5, 3, 0)
    delivered += values(a.drain())

    b = consumer("g", "b", auto_offset_reset="earliest")
    b.subscribe("t")
    owned = check_partitioned([a, b], parts)
    assert sorted(len(p) for p in owned.values()) == [2, 3]  # range assignor: 5 over 2 is 3 + 2
    produced |= _fill(produce_json, "t", 5, 3, 3)
    for c in (a, b):
        delivered += values(c.drain())

    c3 = consumer("g", "c", auto_offset_reset="earliest")
    c3.subscribe("t")
    owned = check_partitioned([a, b, c3], parts)
    assert sorted(len(p) for p in owned.values()) == [1, 2, 2]
    produced |= _fill(produce_json, "t", 5, 3, 6)
    for c in (a, b, c3):
        delivered += values(c.drain())

    b.delete()
    check_partitioned([a, c3], parts)
    produced |= _fill(produce_json, "t", 5, 3, 9)
    for c in (a, c3):
        delivered += values(c.drain())

    a.delete()
    check_partitioned([c3], parts)
    produced |= _fill(produce_json, "t", 5, 3, 12)
    delivered += values(c3.drain())

    assert len(delivered) == len(set(delivered)), "a record was delivered twice"
    assert set(delivered) == produced
    assert _generation(server, "g") == 5  # a, b, c joined; b, a left


def test_range_assignment_is_stable_and_positions_of_kept_partitions_stay(
        consumer, create_topic, produce_json, check_partitioned):
    create_topic("t", partitions=4)
    produce_json("t", list(range(10)), partition=0)
    produce_json("t", list(range(10, 13)), partition=3)
    # Member ids are "<client.id>-<uuid>": the range assignor orders members by them.
    a = consumer("g", "a", auto_offset_reset="earliest", auto_commit_enable="false", client_id="client-a")
    a.subscribe("t")
    a.seek("t", 0, 6)
    a.seek("t", 3, 1)
    assert a.assignments()["member_id"].startswith("client-a-")
    b = consumer("g", "b", auto_offset_reset="earliest", auto_commit_enable="false", client_id="client-b")
    b.subscribe("t")
    owned = check_partitioned([a, b], _all("t", 4))
    assert owned == {"a": {("t", 0), ("t", 1)}, "b": {("t", 2), ("t", 3)}}
    # a kept partition 0 and its position 6; partition 3 moved and b starts it from the
    # committed offset (none: earliest), not from a's uncommitted position.
    assert [r["offset"] for r in a.poll_owned()] == [6, 7, 8, 9]
    assert [r["value"] for r in b.poll_owned()] == [10, 11, 12]


def test_commit_before_polling_the_new_generation_is_rebalance_in_progress(consumer, create_topic, server):
    create_topic("t", partitions=2)
    a = consumer("g", "a", auto_commit_enable="false")
    a.subscribe("t")
    body = error_of(a.commit({"offsets": [{"topic": "t", "partition": 0, "offset": 1}]}), 503)
    assert body["kafka_error"] == "REBALANCE_IN_PROGRESS"
    a.poll()  # adopts the generation
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 1}]})
    b = consumer("g", "b", auto_commit_enable="false")
    b.subscribe("t")
    r = a.commit()  # a has not polled since b joined: fenced, with Retry-After
    error_of(r, 503)
    assert r.headers.get("Retry-After")
    assert r.get_json()["kafka_error"] == "REBALANCE_IN_PROGRESS"
    assert a.committed(("t", 0)) == {("t", 0): 2}
    a.poll()
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 3}]})
    assert a.committed(("t", 0)) == {("t", 0): 4}
    assert a.assignments()["generation_id"] == _generation(server, "g")


def test_a_partition_taken_during_a_poll_yields_nothing_to_its_old_owner(
        consumer, create_topic, produce_json, server, check_partitioned):
    """A rebalance that commits while a poll is between its fetch and storing positions:
    the records of the partition it lost are dropped from that poll and its new owner reads
    them from the committed offset."""
    create_topic("t", partitions=2)
    _fill(produce_json, "t", 2, 4)
    a = consumer("g", "a", auto_offset_reset="earliest", auto_commit_enable="false")
    a.subscribe("t")
    b = consumer("g", "b", auto_offset_reset="earliest", auto_commit_enable="false")
    fetcher = server.consumer_fetcher
    original = fetcher._fetch
    calls = []

    def fetch_then_rebalance(*args, **kw):
        result = original(*args, **kw)
        if not calls:
            server.group_coordinator.subscribe("g", "b", ["t"], None)  # b joins mid-poll
        calls.append(args[1:3])
        return result

    fetcher._fetch = fetch_then_rebalance
    try:
        got = a.poll()
    finally:
        fetcher._fetch = original
    owned = check_partitioned([a, b], _all("t", 2))
    assert owned["a"] and owned["b"]
    assert {(r["topic"], r["partition"]) for r in got} <= owned["a"]
    assert len(got) == 4  # a kept one partition's four records
    from_b = b.drain()
    assert set(by_partition(from_b)) == owned["b"] and len(from_b) == 4
    assert sorted(values(got) + values(from_b)) == sorted(f"{p}-{i}" for p in range(2) for i in range(4))


def test_dead_instance_partitions_move_after_expiry(
        consumer, create_topic, produce_json, server, clock, check_partitioned, client):
    create_topic("t", partitions=4)
    a = consumer("g", "a", auto_offset_reset="earliest", auto_commit_enable="false")
    b = consumer("g", "b", auto_offset_reset="earliest", auto_commit_enable="false")
    a.subscribe("t")
    b.subscribe("t")
    owned = check_partitioned([a, b], _all("t", 4))
    produced = _fill(produce_json, "t", 4, 2)
    got_a = a.drain()
    a.commit_ok()  # a committed what it read
    got_b = b.drain()  # b read but never commits: it is about to die
    timeout = server.config.consumer_instance_timeout_ms
    clock.advance(timeout - 1000)
    a.poll_owned()  # a stays alive
    assert server.group_coordinator.expire_instances() == 0
    clock.advance(2000)  # b has been idle longer than consumer.instance.timeout.ms, a has not
    assert server.group_coordinator.expire_instances() == 1
    check_partitioned([a], _all("t", 4))
    error_of(b.get("/assignments"), 404, 40403)
    error_of(b.poll_response(), 404, 40403)
    # b's partitions replay from their committed offset (none: earliest) to a: at-least-once.
    replayed = a.drain()
    assert set(by_partition(replayed)) == owned["b"]
    assert sorted(values(replayed)) == sorted(values(got_b))
    assert set(values(got_a)) | set(values(got_b)) == produced
    # A later instance may reuse the dead one's name.
    assert consumer("g", "b").instance_id == "b"


def test_expiry_of_the_last_instance_leaves_an_empty_group_with_its_offsets(consumer, create_topic, server, clock,
                                                                           client, cluster_id):
    create_topic("t")
    a = consumer("g", "a", auto_commit_enable="false")  # its expiry commits nothing of its own
    a.subscribe("t")
    a.poll()
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]})
    clock.advance(server.config.consumer_instance_timeout_ms + 1)
    assert server.group_coordinator.expire_instances() == 1
    g = client.get(f"/v3/clusters/{cluster_id}/consumer-groups/g").get_json()
    assert g["state"] == "EMPTY"
    assert consumer("g", "new").committed(("t", 0)) == {("t", 0): 1}


def test_partitions_added_to_a_topic_trigger_a_rebalance(
        consumer, create_topic, produce_json, server, client, cluster_id, check_partitioned):
    create_topic("t", partitions=2)
    a = consumer("g", "a", auto_offset_reset="earliest")
    b = consumer("g", "b", auto_offset_reset="earliest")
    a.subscribe("t")
    b.subscribe("t")
    check_partitioned([a, b], _all("t", 2))
    assert server.group_coordinator.rebalance_on_metadata_change() == 0  # nothing changed: no rebalance
    generation = _generation(server, "g")
    r = client.patch(f"/v3/clusters/{cluster_id}/topics/t", json={"partitions_count": 5})
    assert r.status_code == 200, r.get_data(as_text=True)
    # Until the duty runs, the new partitions belong to nobody; then they are assigned.
    check_partitioned([a, b], _all("t", 2))
    assert server.group_coordinator.rebalance_on_metadata_change() == 1
    assert _generation(server, "g") == generation + 1
    check_partitioned([a, b], _all("t", 5))
    assert server.group_coordinator.rebalance_on_metadata_change() == 0
    produced = _fill(produce_json, "t", 5, 2)
    got = a.drain() + b.drain()
    assert sorted(values(got)) == sorted(produced)


def test_a_new_topic_matching_a_pattern_triggers_a_rebalance(consumer, create_topic, server, check_partitioned):
    create_topic("logs-a", partitions=2)
    a = consumer("g", "a")
    b = consumer("g", "b")
    a.subscribe(pattern="logs-.*")
    b.subscribe(pattern="logs-.*")
    check_partitioned([a, b], _all("logs-a", 2))
    create_topic("logs-b", partitions=2)
    create_topic("metrics", partitions=2)
    assert server.group_coordinator.rebalance_on_metadata_change() == 1
    check_partitioned([a, b], _all("logs-a", 2) | _all("logs-b", 2))


def test_members_of_different_groups_each_get_every_partition(consumer, create_topic, produce_json,
                                                              check_partitioned):
    create_topic("t", partitions=3)
    produced = _fill(produce_json, "t", 3, 2)
    g1 = [consumer("g1", n, auto_offset_reset="earliest") for n in ("a", "b")]
    g2 = [consumer("g2", n, auto_offset_reset="earliest") for n in ("a", "b", "c")]
    for c in g1 + g2:
        c.subscribe("t")
    check_partitioned(g1, _all("t", 3))
    check_partitioned(g2, _all("t", 3))
    for group in (g1, g2):
        got = [v for c in group for v in values(c.drain())]
        assert sorted(got) == sorted(produced)


def test_unsubscribe_gives_the_partitions_to_the_others(consumer, create_topic, client, check_partitioned):
    create_topic("t", partitions=4)
    a = consumer("g", "a")
    b = consumer("g", "b")
    a.subscribe("t")
    b.subscribe("t")
    check_partitioned([a, b], _all("t", 4))
    assert client.delete(a.path + "/subscription").status_code == 204
    check_partitioned([a, b], _all("t", 4))
    assert a.assignment() == set() and b.assignment() == _all("t", 4)


def test_more_instances_than_partitions_leaves_some_idle(consumer, create_topic, produce_json, check_partitioned):
    create_topic("t", partitions=2)
    cs = [consumer("g", n, auto_offset_reset="earliest") for n in ("a", "b", "c")]
    for c in cs:
        c.subscribe("t")
    owned = check_partitioned(cs, _all("t", 2))
    assert sorted(len(p) for p in owned.values()) == [0, 1, 1]
    produced = _fill(produce_json, "t", 2, 3)
    got = [v for c in cs for v in values(c.drain())]
    assert sorted(got) == sorted(produced)


def test_subscribing_again_replaces_the_subscription(consumer, create_topic, check_partitioned):
    create_topic("t1", partitions=2)
    create_topic("t2", partitions=2)
    a = consumer("g", "a")
    b = consumer("g", "b")
    a.subscribe("t1")
    b.subscribe("t1", "t2")
    check_partitioned([a, b], _all("t1", 2) | _all("t2", 2))
    assert b.assignment() >= _all("t2", 2)
    a.subscribe("t2")  # a moves from t1 to t2: b takes all of t1 and shares t2
    owned = check_partitioned([a, b], _all("t1", 2) | _all("t2", 2))
    assert owned["b"] >= _all("t1", 2)
    assert len(owned["a"]) == 1 and owned["a"] <= _all("t2", 2)
    assert a.get("/subscription").get_json() == {"topics": ["t2"]}


def test_a_subscribed_topic_created_later_is_assigned_by_the_metadata_duty(consumer, create_topic, server,
                                                                          produce_json, check_partitioned):
    a = consumer("g", "a", auto_offset_reset="earliest")
    b = consumer("g", "b", auto_offset_reset="earliest")
    a.subscribe("later")
    b.subscribe("later")
    assert a.assignment() == set() and b.assignment() == set()
    create_topic("later", partitions=3)
    assert server.group_coordinator.rebalance_on_metadata_change() == 1
    check_partitioned([a, b], _all("later", 3))
    produced = _fill(produce_json, "later", 3, 2)
    assert sorted(values(a.drain() + b.drain())) == sorted(produced)
