"""REST Proxy v2: metadata, produce in json and binary formats, auto-create, and the stateless
read ``GET /topics/{t}/partitions/{p}/records``."""
from __future__ import annotations

import pytest

from service.partitioner import partition_for_key
from tests.api.helpers import V2_EMBEDDED_BINARY, V2_EMBEDDED_JSON, V2_JSON, assert_error, b64, unb64


def _ok(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


# ------------------------------------------------------------------------ metadata
def test_root(client):
    r = client.get("/")
    assert r.status_code == 200 and r.get_json() == {}
    assert r.mimetype == V2_JSON
    assert client.get("/", headers={"Accept": "application/json"}).mimetype == "application/json"


def test_topics_and_brokers(client, create_topic):
    for name in ("b", "a", "c"):
        create_topic(name)
    assert _ok(client.get("/topics")) == ["a", "b", "c"]
    assert _ok(client.get("/brokers")) == {"brokers": [0, 1, 2]}


def test_topic(client, create_topic):
    t = create_topic("t", partitions=2, replication_factor=2, retention_ms="1000")
    body = _ok(client.get("/topics/t", headers={"Accept": V2_JSON}))
    assert body["name"] == "t"
    assert body["configs"]["retention.ms"] == "1000"
    assert body["configs"]["cleanup.policy"] == "delete"
    assert [p["partition"] for p in body["partitions"]] == [0, 1]
    for p, state in zip(body["partitions"], t.partitions):
        assert p["leader"] == state.leader
        assert [r["broker"] for r in p["replicas"]] == list(state.replicas)
        assert [r["broker"] for r in p["replicas"] if r["leader"]] == [state.leader]
        assert all(r["in_sync"] == (r["broker"] in state.isr) for r in p["replicas"])


def test_partitions(client, create_topic):
    create_topic("t", partitions=3)
    parts = _ok(client.get("/topics/t/partitions"))
    assert [p["partition"] for p in parts] == [0, 1, 2]
    assert _ok(client.get("/topics/t/partitions/2")) == parts[2]
    assert_error(client.get("/topics/t/partitions/3"), 404, 40402)
    assert_error(client.get("/topics/nope/partitions/0"), 404, 40401)
    assert_error(client.get("/topics/nope"), 404, 40401)


def test_offsets(client, create_topic, produce_v2, server, clock):
    create_topic("t", retention_ms="1000")
    assert _ok(client.get("/topics/t/partitions/0/offsets")) == {"beginning_offset": 0, "end_offset": 0}
    _ok(produce_v2("t", [{"value": i} for i in range(3)]))
    assert _ok(client.get("/topics/t/partitions/0/offsets")) == {"beginning_offset": 0, "end_offset": 3}
    clock.advance(5000)
    server.log_manager.apply_retention()
    assert _ok(client.get("/topics/t/partitions/0/offsets")) == {"beginning_offset": 3, "end_offset": 3}


# ------------------------------------------------------------------------ produce
def test_produce_json(produce_v2, create_topic, read_v2):
    create_topic("t", partitions=2)
    r = produce_v2("t", [{"key": "somekey", "value": {"foo": "bar"}, "partition": 0},
                         {"value": ["foo", "bar"], "partition": 1},
                         {"value": 53.5, "partition": 0}])
    assert r.mimetype == V2_JSON
    body = _ok(r)
    assert body == {"offsets": [{"partition": 0, "offset": 0, "error_code": None, "error": None},
                                {"partition": 1, "offset": 0, "error_code": None, "error": None},
                                {"partition": 0, "offset": 1, "error_code": None, "error": None}],
                    "key_schema_id": None, "value_schema_id": None}
    records = _ok(read_v2("t", 0, fmt="json"))
    assert [(x["key"], x["value"], x["offset"], x["topic"], x["partition"]) for x in records] == [
        ("somekey", {"foo": "bar"}, 0, "t", 0), (None, 53.5, 1, "t", 0)]
    # json is stored as JSON text: the key keeps its quotes
    binary = _ok(read_v2("t", 0, fmt="binary"))
    assert unb64(binary[0]["key"]) == b'"somekey"' and unb64(binary[0]["value"]) == b'{"foo":"bar"}'


def test_produce_binary(produce_v2, create_topic, read_v2):
    create_topic("t")
    body = _ok(produce_v2("t", [{"key": "a2V5", "value": "Y29uZmx1ZW50"}, {"value": "a2Fma2E="},
                                {"value": b64(b"\x00\xff")}], fmt="binary"))
    assert [o["offset"] for o in body["offsets"]] == [0, 1, 2]
    records = _ok(read_v2("t", 0))
    assert [(x["key"], x["value"]) for x in records] == [("a2V5", "Y29uZmx1ZW50"), (None, "a2Fma2E="),
                                                        (None, b64(b"\x00\xff"))]


def test_produce_to_partition_path(produce_v2, create_topic, read_v2):
    create_topic("t", partitions=3)
    body = _ok(produce_v2("t", [{"value": "a"}, {"value": "b", "partition": 0}], partition=2))
    assert [(o["partition"], o["offset"]) for o in body["offsets"]] == [(2, 0), (0, 0)]
    assert [x["value"] for x in _ok(read_v2("t", 2, fmt="json"))] == ["a"]


def test_keyed_v2_records_use_murmur2(produce_v2, create_topic):
    create_topic("t", partitions=5)
    body = _ok(produce_v2("t", [{"key": b64(f"k{i}"), "value": "eA=="} for i in range(20)], fmt="binary"))
    assert [o["partition"] for o in body["offsets"]] == [partition_for_key(f"k{i}".encode(), 5) for i in range(20)]


def test_v2_headers_and_timestamp(produce_v2, create_topic, read_v2):
    create_topic("t")
    _ok(produce_v2("t", [{"value": 1, "timestamp": 1612552482123,
                          "headers": [{"key": "h", "value": b64("v")}, {"name": "n", "value": None}]}]))
    [record] = _ok(read_v2("t", 0, fmt="json"))
    assert record["timestamp"] == 1612552482123
    assert record["headers"] == [{"name": "h", "value": b64("v")}, {"name": "n", "value": None}]


def test_no_content_type_is_json(client, create_topic, read_v2):
    create_topic("t")
    r = client.post("/topics/t", data=b'{"records":[{"value":{"a":1}}]}')
    _ok(r)
    assert _ok(read_v2("t", 0, fmt="json"))[0]["value"] == {"a": 1}


@pytest.mark.parametrize("content_type", ["application/vnd.kafka.v2+json", "application/json",
                                          "application/vnd.kafka+json", "application/octet-stream"])
def test_format_less_content_types_are_binary(client, create_topic, read_v2, content_type):
    create_topic("t")
    _ok(client.post("/topics/t", data=b'{"records":[{"value":"eHl6"}]}', content_type=content_type))
    assert unb64(_ok(read_v2("t", 0))[0]["value"]) == b"xyz"


def test_auto_create_on_first_produce(produce_v2, client, cluster_id, server):
    body = _ok(produce_v2("fresh", [{"value": "hello"}]))
    assert body["offsets"][0]["offset"] == 0
    assert "fresh" in _ok(client.get("/topics"))
    topic = client.get(f"/v3/clusters/{cluster_id}/topics/fresh").get_json()
    assert (topic["partitions_count"], topic["replication_factor"]) == (1, 3)  # num.partitions, min(3, brokers)
    p = client.get(f"/v3/clusters/{cluster_id}/topics/fresh/partitions/0").get_json()
    assert p["log_end_offset"] == 1
    body = _ok(produce_v2("fresh", [{"value": "again"}]))
    assert body["offsets"][0]["offset"] == 1


@pytest.mark.parametrize("config", [{"auto_create_topics_enable": False}], indirect=True)
def test_no_auto_create_when_disabled(produce_v2, client):
    assert_error(produce_v2("fresh", [{"value": "hello"}]), 404, 40401)
    assert _ok(client.get("/topics")) == []


@pytest.mark.parametrize("config", [{"num_partitions": 4, "default_replication_factor": 1}], indirect=True)
def test_auto_create_uses_broker_defaults(produce_v2, server):
    _ok(produce_v2("fresh", [{"value": "hello"}]))
    t = server.controller.topic("fresh")
    assert (t.partitions_count, t.replication_factor) == (4, 1)


# ------------------------------------------------------------------------ stateless read
def test_read_binary_and_json(client, create_topic, produce_v2):
    create_topic("t")
    _ok(produce_v2("t", [{"key": {"id": 1}, "value": {"n": i}} for i in range(3)]))
    r = client.get("/topics/t/partitions/0/records", headers={"Accept": V2_EMBEDDED_JSON})
    assert r.mimetype == V2_EMBEDDED_JSON
    assert [(x["key"], x["value"], x["offset"]) for x in _ok(r)] == [({"id": 1}, {"n": i}, i) for i in range(3)]
    r = client.get("/topics/t/partitions/0/records", headers={"Accept": V2_EMBEDDED_BINARY})
    assert r.mimetype == V2_EMBEDDED_BINARY
    assert [unb64(x["value"]) for x in _ok(r)] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    r = client.get("/topics/t/partitions/0/records")  # no Accept: binary
    assert r.mimetype == V2_EMBEDDED_BINARY and len(_ok(r)) == 3


def test_read_from_offset_with_max_bytes(create_topic, produce_v2, read_v2):
    create_topic("t")
    _ok(produce_v2("t", [{"value": b64(bytes([i]) * 100)} for i in range(5)], fmt="binary"))
    assert [x["offset"] for x in _ok(read_v2("t", 0, offset=2))] == [2, 3, 4]
    assert [x["offset"] for x in _ok(read_v2("t", 0, offset=1, max_bytes=1))] == [1]
    assert [x["offset"] for x in _ok(read_v2("t", 0, offset=1, max_bytes=250))] == [1, 2]
    assert _ok(read_v2("t", 0, offset=5)) == []
    assert_error(read_v2("t", 0, offset=6), 416)


def test_read_non_json_as_json_is_refused(create_topic, produce_v2, read_v2):
    create_topic("t")
    _ok(produce_v2("t", [{"value": b64(b"not json")}], fmt="binary"))
    assert_error(read_v2("t", 0, fmt="json"), 422)
    assert unb64(_ok(read_v2("t", 0))[0]["value"]) == b"not json"


def test_read_waits_up_to_timeout_for_records(create_topic, read_v2):
    create_topic("t")
    assert _ok(read_v2("t", 0, timeout=50)) == []


def test_read_unknown(create_topic, read_v2):
    create_topic("t")
    assert_error(read_v2("nope", 0), 404, 40401)
    assert_error(read_v2("t", 1), 404, 40402)
