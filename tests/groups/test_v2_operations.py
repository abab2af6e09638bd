"""The thirteen REST Proxy v2 consumer operations (rest-proxy.md 3.3): paths, content types,
status codes, bodies, and the errors each may answer (40403 unknown instance, 40902 duplicate
instance, 40903 subscribe vs assign and seek on unassigned, 40601 wrong Accept, 42204 bad
configs, 422 unknown fields and bad offsets)."""
from __future__ import annotations

import base64
import re

import orjson
import pytest

from tests.groups.conftest import (
    JSON,
    V2_EMBEDDED_BINARY,
    V2_EMBEDDED_JSON,
    V2_JSON,
    Consumer,
    error_of,
    unb64,
)

UNKNOWN_INSTANCE = 40403


def _create(client, group: str, body: dict | None = None, content_type: str = V2_JSON):
    data = None if body is None else orjson.dumps(body)
    return client.post(f"/consumers/{group}", data=data, content_type=content_type if data else None)


# ------------------------------------------------------------------------ 1: create
def test_create_answers_instance_id_and_base_uri(client):
    r = _create(client, "g1", {"name": "my_consumer", "format": "binary", "auto.offset.reset": "earliest",
                               "auto.commit.enable": "false"})
    assert r.status_code == 200 and r.mimetype == V2_JSON
    assert r.get_json() == {"instance_id": "my_consumer",
                            "base_uri": "http://localhost/consumers/g1/instances/my_consumer"}


def test_create_without_name_generates_rest_consumer_uuid(client):
    for body in (None, {}, {"format": "JSON"}):  # no body at all, an empty object, a mixed-case format
        r = _create(client, "g1", body)
        assert r.status_code == 200, r.get_data(as_text=True)
        instance = r.get_json()["instance_id"]
        assert re.fullmatch(r"rest-consumer-[0-9a-f-]{36}", instance), instance
        assert r.get_json()["base_uri"].endswith(f"/consumers/g1/instances/{instance}")


def test_create_accepts_the_deprecated_id_field_and_json_content_type(client):
    r = _create(client, "g1", {"id": "old-style"}, content_type=JSON)
    assert r.status_code == 200 and r.get_json()["instance_id"] == "old-style"


def test_create_duplicate_name_is_40902_in_the_same_group_only(client):
    assert _create(client, "g1", {"name": "c"}).status_code == 200
    body = error_of(_create(client, "g1", {"name": "c"}), 409, 40902)
    assert "already exists" in body["message"]
    assert _create(client, "g2", {"name": "c"}).status_code == 200


@pytest.mark.parametrize("field,value", [
    ("auto.offset.reset", "sometimes"),
    ("auto.offset.reset", 3),
    ("auto.commit.enable", "maybe"),
    ("auto.commit.interval.ms", "soon"),
    ("auto.commit.interval.ms", -1),
    ("fetch.min.bytes", "x"),
    ("fetch.min.bytes", -2),
    ("consumer.request.timeout.ms", -5),
    ("consumer.request.timeout.ms", True),
    ("isolation.level", "serializable"),
])
def test_create_invalid_config_value_is_42204(client, field, value):
    body = error_of(_create(client, "g1", {"name": "c", field: value}), 422, 42204)
    assert "Invalid consumer configuration" in body["message"] and field in body["message"]
    # Nothing was created: the name is still free.
    assert _create(client, "g1", {"name": "c"}).status_code == 200


def test_create_unknown_field_is_422_unrecognized_field(client):
    body = error_of(_create(client, "g1", {"name": "c", "max.poll.records": "10"}), 422, 422)
    assert body["message"] == "Unrecognized field: max.poll.records"


@pytest.mark.parametrize("fmt", ["xml", "avro", 7])
def test_create_unsupported_format_is_422(client, fmt):
    error_of(_create(client, "g1", {"format": fmt}), 422)


def test_create_bad_bodies(client):
    error_of(_create(client, "g1", {"name": "has space"}), 422, 422)
    error_of(_create(client, "g1", {"name": 5}), 422, 422)
    error_of(_create(client, "g1", ["name"]), 422, 422)
    r = client.post("/consumers/g1", data=b"{not json", content_type=V2_JSON)
    error_of(r, 400)
    r = client.post("/consumers/g1", data=b'{"name": "c"}', content_type="text/plain")
    error_of(r, 415)


def test_create_accepts_string_config_values_as_the_rest_proxy_sends_them(client, consumer, server):
    c = consumer("g1", "c", format="binary", auto_offset_reset="EARLIEST", auto_commit_enable="false",
                 fetch_min_bytes="10", consumer_request_timeout_ms="250", isolation_level="read_committed")
    m = server.group_coordinator.member("g1", c.instance_id)
    assert (m.format, m.auto_offset_reset, m.auto_commit_enable, m.fetch_min_bytes, m.request_timeout_ms,
            m.isolation_level) == ("binary", "earliest", False, 10, 250, "read_committed")


# ------------------------------------------------------------------------ 2: delete
def test_delete_is_204_then_40403(client, consumer):
    c = consumer("g1", "c")
    r = client.delete(c.path)
    assert r.status_code == 204 and r.get_data() == b""
    error_of(client.delete(c.path), 404, UNKNOWN_INSTANCE)
    # A body-less DELETE with a content type (as some clients send) is fine too.
    c2 = consumer("g1", "c2")
    assert client.delete(c2.path, content_type=V2_JSON).status_code == 204


def test_every_instance_operation_answers_40403_for_an_unknown_instance(client, create_topic):
    create_topic("t")
    ghost = Consumer(client, "g1", "ghost", "json")
    parts = {"partitions": [{"topic": "t", "partition": 0}]}
    calls = [
        ghost.post("/subscription", {"topics": ["t"]}),
        ghost.get("/subscription"),
        client.delete(ghost.path + "/subscription"),
        ghost.post("/assignments", parts),
        ghost.get("/assignments"),
        ghost.post("/positions", {"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
        ghost.post("/positions/beginning", parts),
        ghost.post("/positions/end", parts),
        ghost.get("/records", headers={"Accept": V2_EMBEDDED_JSON}),
        ghost.post("/offsets"),
        client.get(ghost.path + "/offsets", data=orjson.dumps(parts), content_type=V2_JSON),
        client.delete(ghost.path),
    ]
    for r in calls:
        body = error_of(r, 404, UNKNOWN_INSTANCE)
        assert body["message"] == "Consumer instance not found."


# ------------------------------------------------------------------------ 3-5: subscription
def test_subscribe_get_and_unsubscribe(client, consumer, create_topic):
    create_topic("test1")
    create_topic("test2")
    c = consumer("g1", "c")
    assert c.get("/subscription").get_json() == {"topics": []}
    r = c.post("/subscription", {"topics": ["test2", "test1"]})
    assert r.status_code == 204 and r.get_data() == b""
    r = c.get("/subscription")
    assert r.status_code == 200 and r.mimetype == V2_JSON
    assert r.get_json() == {"topics": ["test1", "test2"]}
    assert c.assignment() == {("test1", 0), ("test2", 0)}
    r = client.delete(c.path + "/subscription")
    assert r.status_code == 204 and r.get_data() == b""
    assert c.get("/subscription").get_json() == {"topics": []}
    assert c.assignment() == set()


def test_subscribe_to_a_pattern(consumer, create_topic):
    for name in ("test-a", "test-b", "other"):
        create_topic(name)
    c = consumer("g1", "c")
    c.subscribe(pattern="test-.*")
    assert c.get("/subscription").get_json() == {"topics": [], "topic_pattern": "test-.*"}
    assert c.assignment() == {("test-a", 0), ("test-b", 0)}


def test_subscribe_errors(client, consumer, create_topic):
    create_topic("t")
    c = consumer("g1", "c")
    error_of(c.post("/subscription", {"topics": ["t"], "topic_pattern": "t.*"}), 409, 40903)
    error_of(c.post("/subscription", {}), 409, 40903)
    error_of(c.post("/subscription", {"topics": []}), 422, 422)
    error_of(c.post("/subscription", {"topics": "t"}), 422, 422)
    error_of(c.post("/subscription", {"topic_pattern": "(unclosed"}), 422, 422)
    error_of(c.post("/subscription"), 422)  # a body is required
    # Subscribing to a topic that does not exist yet is allowed (Kafka waits for it).
    c.subscribe("later")
    assert c.assignment() == set()


def test_subscribe_and_assign_are_mutually_exclusive_40903(client, consumer, create_topic):
    create_topic("t", partitions=2)
    subscribed = consumer("g1", "s")
    subscribed.subscribe("t")
    body = error_of(subscribed.post("/assignments", {"partitions": [{"topic": "t", "partition": 0}]}), 409, 40903)
    assert body["message"].startswith("Illegal state")
    assigned = consumer("g1", "a")
    assigned.assign(("t", 1))
    error_of(assigned.post("/subscription", {"topics": ["t"]}), 409, 40903)
    error_of(assigned.post("/subscription", {"topic_pattern": "t"}), 409, 40903)


# ------------------------------------------------------------------------ 6, 7: assignments
def test_assign_and_get_assignments(client, consumer, create_topic):
    create_topic("test", partitions=3)
    c = consumer("g1", "c")
    r = c.post("/assignments", {"partitions": [{"topic": "test", "partition": 0}, {"topic": "test", "partition": 2}]})
    assert r.status_code == 204 and r.get_data() == b""
    r = c.get("/assignments")
    assert r.status_code == 200 and r.mimetype == V2_JSON
    body = r.get_json()
    assert body["partitions"] == [{"topic": "test", "partition": 0}, {"topic": "test", "partition": 2}]
    assert isinstance(body["generation_id"], int) and isinstance(body["member_id"], str) and body["member_id"]
    # A manual assignment is not group membership: the group does not rebalance for it.
    other = consumer("g1", "other")
    other.subscribe("test")
    assert other.assignment() == {("test", 0), ("test", 1), ("test", 2)}
    assert c.assignment() == {("test", 0), ("test", 2)}


def test_assign_errors(consumer, create_topic):
    create_topic("test", partitions=2)
    c = consumer("g1", "c")
    error_of(c.post("/assignments", {"partitions": [{"topic": "nope", "partition": 0}]}), 404, 40401)
    error_of(c.post("/assignments", {"partitions": [{"topic": "test", "partition": 2}]}), 404, 40402)
    error_of(c.post("/assignments", {"partitions": [{"topic": "test", "partition": "0"}]}), 422, 422)
    error_of(c.post("/assignments", {"partitions": [{"partition": 0}]}), 422, 422)
    error_of(c.post("/assignments", {"partitions": "test"}), 422, 422)
    assert c.assignment() == set()


def test_unsubscribe_also_clears_a_manual_assignment(client, consumer, create_topic):
    """Kafka's ``unsubscribe()`` also clears partitions given by ``assign()``."""
    create_topic("t")
    c = consumer("g1", "c")
    c.assign(("t", 0))
    assert client.delete(c.path + "/subscription").status_code == 204
    assert c.assignment() == set()
    c.subscribe("t")  # and the instance may now subscribe
    assert c.assignment() == {("t", 0)}


# ------------------------------------------------------------------------ 8-10: positions
def test_seek_to_offsets_beginning_and_end(consumer, create_topic, produce_json):
    create_topic("test", partitions=2)
    produce_json("test", list(range(10)), partition=0)
    produce_json("test", list(range(100, 104)), partition=1)
    c = consumer("g1", "c", auto_offset_reset="earliest")
    c.assign(("test", 0), ("test", 1))
    r = c.post("/positions", {"offsets": [{"topic": "test", "partition": 0, "offset": 7}]})
    assert r.status_code == 204 and r.get_data() == b""
    r = c.post("/positions/end", {"partitions": [{"topic": "test", "partition": 1}]})
    assert r.status_code == 204 and r.get_data() == b""
    assert [(x["partition"], x["offset"]) for x in c.poll()] == [(0, 7), (0, 8), (0, 9)]
    r = c.post("/positions/beginning", {"partitions": [{"topic": "test", "partition": 0},
                                                       {"topic": "test", "partition": 1}]})
    assert r.status_code == 204
    got = c.drain()
    assert sorted((x["partition"], x["offset"]) for x in got) == \
        [(0, o) for o in range(10)] + [(1, o) for o in range(4)]


def test_seek_to_timestamps(consumer, create_topic, client):
    create_topic("test")
    base = 1_700_000_000_000
    records = [{"value": i, "timestamp": base + 1000 * i, "partition": 0} for i in range(5)]
    r = client.post("/topics/test", data=orjson.dumps({"records": records}), content_type=V2_EMBEDDED_JSON)
    assert r.status_code == 200, r.get_data(as_text=True)
    c = consumer("g1", "c")
    c.assign(("test", 0))
    # ISO-8601 (as the REST Proxy takes it): the first record at or after 2023-11-14T22:13:22Z (= base + 2000).
    r = c.post("/positions", {"timestamps": [{"topic": "test", "partition": 0, "timestamp": "2023-11-14T22:13:22Z"}]})
    assert r.status_code == 204, r.get_data(as_text=True)
    assert [x["value"] for x in c.poll()] == [2, 3, 4]
    assert [x["timestamp"] for x in c.poll()] == []
    # Epoch milliseconds work too; a timestamp after every record seeks to the end.
    c.post("/positions", {"timestamps": [{"topic": "test", "partition": 0, "timestamp": base + 3500}]})
    assert [x["value"] for x in c.poll()] == [4]
    c.post("/positions", {"timestamps": [{"topic": "test", "partition": 0, "timestamp": base + 60_000}]})
    assert c.poll() == []
    error_of(c.post("/positions", {"timestamps": [{"topic": "test", "partition": 0, "timestamp": "yesterday"}]}), 400)


def test_seek_on_an_unassigned_partition_is_40903(consumer, create_topic):
    create_topic("test", partitions=2)
    c = consumer("g1", "c")
    c.assign(("test", 0))
    body = error_of(c.post("/positions", {"offsets": [{"topic": "test", "partition": 1, "offset": 0}]}), 409, 40903)
    assert "test-1" in body["message"]
    error_of(c.post("/positions/beginning", {"partitions": [{"topic": "test", "partition": 1}]}), 409, 40903)
    error_of(c.post("/positions/end", {"partitions": [{"topic": "test", "partition": 1}]}), 409, 40903)
    # One bad entry refuses the whole seek: partition 0 did not move either.
    error_of(c.post("/positions", {"offsets": [{"topic": "test", "partition": 0, "offset": 5},
                                              {"topic": "test", "partition": 1, "offset": 0}]}), 409, 40903)
    assert c.poll() == []


@pytest.mark.parametrize("offset", [-1, "3", 1.5, True, None, 2**63])
def test_seek_to_a_bad_offset_is_422(consumer, create_topic, offset):
    create_topic("test")
    c = consumer("g1", "c")
    c.assign(("test", 0))
    error_of(c.post("/positions", {"offsets": [{"topic": "test", "partition": 0, "offset": offset}]}), 422, 422)


def test_seek_to_unknown_topic_or_partition(consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    c.assign(("test", 0))
    error_of(c.post("/positions", {"offsets": [{"topic": "nope", "partition": 0, "offset": 0}]}), 404, 40401)
    error_of(c.post("/positions/end", {"partitions": [{"topic": "test", "partition": 9}]}), 404, 40402)


def test_seek_beyond_the_end_resets_by_auto_offset_reset(consumer, create_topic, produce_json):
    create_topic("test")
    produce_json("test", [1, 2, 3])
    c = consumer("g1", "c", auto_offset_reset="earliest")
    c.assign(("test", 0))
    c.seek("test", 0, 1000)  # out of range: the next poll resets (4.16) and answers nothing this time
    assert c.poll() == []
    assert [x["value"] for x in c.poll()] == [1, 2, 3]


# ------------------------------------------------------------------------ 11: records
def test_records_binary_shape_and_content_type(consumer, create_topic, client):
    create_topic("test")
    r = client.post("/topics/test/partitions/0", content_type=V2_EMBEDDED_BINARY, data=orjson.dumps(
        {"records": [{"key": base64.b64encode(b"key").decode(), "value": base64.b64encode(b"confluent").decode()},
                     {"value": base64.b64encode(b"kafka").decode()}]}))
    assert r.status_code == 200
    c = consumer("g1", "c", format="binary", auto_offset_reset="earliest")
    c.subscribe("test")
    r = c.poll_response()
    assert r.status_code == 200 and r.mimetype == V2_EMBEDDED_BINARY
    got = r.get_json()
    assert [(x["topic"], x["partition"], x["offset"]) for x in got] == [("test", 0, 0), ("test", 0, 1)]
    assert (unb64(got[0]["key"]), unb64(got[0]["value"])) == (b"key", b"confluent")
    assert got[1]["key"] is None and unb64(got[1]["value"]) == b"kafka"
    assert all(isinstance(x["timestamp"], int) for x in got)


def test_records_json_shape(consumer, create_topic, produce_json):
    create_topic("test")
    produce_json("test", [{"foo": "bar"}, [1, 2]], keys=["somekey", None])
    c = consumer("g1", "c", auto_offset_reset="earliest")
    c.subscribe("test")
    got = c.poll()
    assert [{k: x[k] for k in ("topic", "key", "value", "partition", "offset")} for x in got] == [
        {"topic": "test", "key": "somekey", "value": {"foo": "bar"}, "partition": 0, "offset": 0},
        {"topic": "test", "key": None, "value": [1, 2], "partition": 0, "offset": 1}]


def test_records_accept_must_match_the_format_40601(consumer, create_topic, produce_json):
    create_topic("test")
    produce_json("test", [1])
    binary = consumer("g1", "b", format="binary", auto_offset_reset="earliest")
    binary.subscribe("test")
    body = error_of(binary.poll_response(accept=V2_EMBEDDED_JSON), 406, 40601)
    assert "does not match" in body["message"]
    js = consumer("g2", "j", auto_offset_reset="earliest")
    js.subscribe("test")
    error_of(js.poll_response(accept=V2_EMBEDDED_BINARY), 406, 40601)
    error_of(js.poll_response(accept="application/vnd.kafka.avro.v2+json"), 406, 40601)
    # A refused poll consumed nothing; generic types are accepted and answered in the instance's format.
    r = js.poll_response(accept="application/json")
    assert r.status_code == 200 and r.mimetype == V2_EMBEDDED_JSON and [x["value"] for x in r.get_json()] == [1]
    r = binary.poll_response(accept="*/*")
    assert r.status_code == 200 and r.mimetype == V2_EMBEDDED_BINARY and len(r.get_json()) == 1


def test_records_bad_query_parameters(consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    c.subscribe("test")
    for query in ({"timeout": "soon"}, {"timeout": -1}, {"max_bytes": 0}, {"max_bytes": "lots"}):
        error_of(c.get("/records", query_string=query, headers={"Accept": c.accept}), 400)


def test_records_with_no_subscription_is_an_empty_list(consumer):
    c = consumer("g1", "c")
    assert c.poll() == []


# ------------------------------------------------------------------------ 12, 13: offsets
def test_commit_offsets_body_stores_offset_plus_one(consumer, create_topic, produce_json):
    create_topic("test", partitions=2)
    c = consumer("g1", "c", auto_commit_enable="false")
    c.subscribe("test")
    c.poll()  # joins the generation
    r = c.commit({"offsets": [{"topic": "test", "partition": 0, "offset": 20, "metadata": "m"},
                              {"topic": "test", "partition": 1, "offset": 0}]})
    assert r.status_code == 200 and r.mimetype == V2_JSON and r.get_json() == []
    r = c.client.get(c.path + "/offsets", content_type=V2_JSON, data=orjson.dumps(
        {"partitions": [{"topic": "test", "partition": 0}, {"topic": "test", "partition": 1}]}))
    assert r.status_code == 200 and r.mimetype == V2_JSON
    assert r.get_json() == {"offsets": [
        {"topic": "test", "partition": 0, "offset": 21, "metadata": "m"},
        {"topic": "test", "partition": 1, "offset": 1, "metadata": ""}]}


def test_commit_partitions_body_stores_offsets_as_sent(consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    c.subscribe("test")
    c.poll()
    c.commit_ok({"partitions": [{"topic": "test", "partition": 0, "offset": 5}]})
    assert c.committed(("test", 0)) == {("test", 0): 5}


def test_commit_with_no_body_commits_every_position(consumer, create_topic, produce_json):
    create_topic("test", partitions=2)
    produce_json("test", [1, 2, 3], partition=0)
    produce_json("test", [4], partition=1)
    c = consumer("g1", "c", auto_offset_reset="earliest", auto_commit_enable="false")
    c.subscribe("test")
    assert len(c.drain()) == 4
    assert c.committed(("test", 0), ("test", 1)) == {("test", 0): -1, ("test", 1): -1}
    c.commit_ok()
    assert c.committed(("test", 0), ("test", 1)) == {("test", 0): 3, ("test", 1): 1}
    # An empty JSON object is "no body" too.
    produce_json("test", [5], partition=1)
    c.drain()
    c.commit_ok({})
    assert c.committed(("test", 1)) == {("test", 1): 2}


@pytest.mark.parametrize("body", [
    {"offsets": [{"topic": "test", "partition": 0, "offset": -1}]},
    {"offsets": [{"topic": "test", "partition": 0, "offset": "1"}]},
    {"offsets": [{"topic": "test", "partition": 0}]},
    {"offsets": [{"topic": "test", "partition": 0, "offset": 1, "metadata": 5}]},
    {"partitions": [{"topic": "test", "partition": 0, "offset": 2**63}]},
    {"offsets": "all"},
    {"something": []},
])
def test_commit_bad_offsets_is_422_and_commits_nothing(consumer, create_topic, body):
    create_topic("test")
    c = consumer("g1", "c")
    c.subscribe("test")
    c.poll()
    error_of(c.commit(body), 422, 422)
    assert c.committed(("test", 0)) == {("test", 0): -1}


def test_commit_unknown_topic_or_partition(consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    c.subscribe("test")
    c.poll()
    error_of(c.commit({"offsets": [{"topic": "nope", "partition": 0, "offset": 1}]}), 404, 40401)
    error_of(c.commit({"offsets": [{"topic": "test", "partition": 3, "offset": 1}]}), 404, 40402)


def test_committed_offsets_errors(client, consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    r = client.get(c.path + "/offsets", content_type=V2_JSON,
                   data=orjson.dumps({"partitions": [{"topic": "test", "partition": 4}]}))
    error_of(r, 404, 40402)
    r = client.get(c.path + "/offsets", content_type=V2_JSON,
                   data=orjson.dumps({"partitions": [{"topic": "nope", "partition": 0}]}))
    error_of(r, 404, 40401)
    error_of(client.get(c.path + "/offsets"), 422)  # the partitions are required
    # Committed offsets are the group's: another instance of the group sees them, -1 where none.
    c.assign(("test", 0))
    c.commit_ok({"offsets": [{"topic": "test", "partition": 0, "offset": 9}]})
    assert consumer("g1", "other").committed(("test", 0)) == {("test", 0): 10}
    assert consumer("g2", "stranger").committed(("test", 0)) == {("test", 0): -1}


def test_manual_assignment_commits_are_not_fenced_by_generation(consumer, create_topic):
    create_topic("test")
    c = consumer("g1", "c")
    c.assign(("test", 0))
    c.commit_ok({"offsets": [{"topic": "test", "partition": 0, "offset": 4}]})  # never polled: still accepted
    assert c.committed(("test", 0)) == {("test", 0): 5}
