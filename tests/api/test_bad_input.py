"""One sweep of bad requests: each answers the expected 4xx with a JSON error body
``{"error_code", "message"}``, never a 500, and writes nothing (every log end offset on every
broker, the topics and the controller's metadata version are unchanged)."""
from __future__ import annotations

import orjson
import pytest

from tests.api.helpers import V2_EMBEDDED_BINARY, V2_EMBEDDED_JSON, V2_JSON, assert_error, b64, concat

JSON = "application/json"
GOOD = {"value": {"type": "STRING", "data": "ok"}}


def _v3(body: bytes | str, content_type: str | None = JSON, **kw) -> dict:
    data = body.encode() if isinstance(body, str) else body
    return {"data": data, **({"content_type": content_type} if content_type else {}), **kw}


def _json(obj, content_type: str = JSON, **kw) -> dict:
    return {"data": orjson.dumps(obj), "content_type": content_type, **kw}


PRODUCE = "{v3}/topics/t/records"
BATCH = "{v3}/topics/t/records:batch"
TOPICS = "{v3}/topics"

# (id, method, path, request kwargs, status, error_code or None for any code of that status)
CASES = [
    # --- malformed bodies
    ("v3-malformed-json", "POST", PRODUCE, _v3('{"value": {"type": "STRING", "data": "x"'), 400, 400),
    ("v3-malformed-second-record", "POST", PRODUCE, _v3(b'{"value": null} {"value": '), 400, 400),
    ("v3-garbage", "POST", PRODUCE, _v3("not json at all"), 400, 400),
    ("v3-not-utf8", "POST", PRODUCE, _v3(b"\xff\xfe\x00"), 400, 400),
    ("v3-deeply-nested", "POST", PRODUCE, _v3("[" * 100_000), 400, 400),
    ("v3-empty-body", "POST", PRODUCE, _v3(""), 422, 42206),
    ("v3-whitespace-body", "POST", PRODUCE, _v3("  \n "), 422, 42206),
    ("create-topic-empty-body", "POST", TOPICS, _v3(""), 422, 42206),
    ("create-topic-malformed", "POST", TOPICS, _v3("{"), 400, 400),
    ("create-topic-not-object", "POST", TOPICS, _json(["t2"]), 422, 42206),
    ("batch-malformed", "POST", BATCH, _v3('{"entries": ['), 400, 400),
    ("batch-not-object", "POST", BATCH, _json([GOOD]), 422, 42206),
    ("batch-empty-body", "POST", BATCH, _v3(""), 422, 42206),
    ("v3-record-not-object", "POST", PRODUCE, _json([GOOD]), 400, 400),
    # --- record contents
    ("v3-bad-base64", "POST", PRODUCE, _json({"value": {"type": "BINARY", "data": "Message$"}}), 400, 400),
    ("v3-bad-base64-key", "POST", PRODUCE, _json({"key": {"type": "BINARY", "data": "%%%"}}), 400, 400),
    ("v3-binary-not-string", "POST", PRODUCE, _json({"value": {"type": "BINARY", "data": 1}}), 400, 400),
    ("v3-binary-object", "POST", PRODUCE, _json({"value": {"type": "BINARY", "data": {"a": 1}}}), 400, 400),
    ("v3-string-not-string", "POST", PRODUCE, _json({"value": {"type": "STRING", "data": 5}}), 400, 400),
    ("v3-unknown-type", "POST", PRODUCE, _json({"value": {"type": "XML", "data": "<a/>"}}), 400, 400),
    ("v3-type-not-string", "POST", PRODUCE, _json({"value": {"type": 5, "data": "x"}}), 400, 400),
    ("v3-data-not-object", "POST", PRODUCE, _json({"value": "plain"}), 400, 400),
    ("v3-unknown-record-field", "POST", PRODUCE, _json({"records": [GOOD]}), 400, 400),
    ("v3-unknown-data-field", "POST", PRODUCE, _json({"value": {"type": "STRING", "data": "x", "extra": 1}}),
     400, 400),
    ("v3-one-bad-of-three", "POST", PRODUCE,
     _v3(concat(GOOD, {"value": {"type": "BINARY", "data": "Message$"}}, GOOD)), 400, 400),
    ("v3-bad-headers", "POST", PRODUCE, _json({**GOOD, "headers": {"a": "b"}}), 400, 400),
    ("v3-header-bad-base64", "POST", PRODUCE, _json({**GOOD, "headers": [{"name": "h", "value": "!!"}]}), 400, 400),
    ("v3-header-no-name", "POST", PRODUCE, _json({**GOOD, "headers": [{"value": None}]}), 400, 400),
    ("v3-bad-timestamp", "POST", PRODUCE, _json({**GOOD, "timestamp": "yesterday"}), 400, 400),
    ("v3-timestamp-before-1970", "POST", PRODUCE, _json({**GOOD, "timestamp": "1969-12-31T23:59:59Z"}), 400, 400),
    ("v3-timestamp-too-large", "POST", PRODUCE, _json({**GOOD, "timestamp": 10**18}), 400, 400),
    ("v3-timestamp-int64-overflow", "POST", PRODUCE, _json({**GOOD, "timestamp": 2**63}), 400, 400),
    ("v3-timestamp-past-9999", "POST", PRODUCE, _json({**GOOD, "timestamp": "9999-12-31T23:59:59-01:00"}),
     400, 400),
    ("v3-partition-not-int", "POST", PRODUCE, _json({**GOOD, "partition_id": "0"}), 400, 400),
    ("v3-avro", "POST", PRODUCE, _json({"value": {"type": "AVRO", "data": {"a": 1}}}), 400, 400),
    ("v3-protobuf", "POST", PRODUCE, _json({"value": {"type": "PROTOBUF", "data": {}}}), 400, 400),
    ("v3-schema-id", "POST", PRODUCE, _json({"value": {"schema_id": 1, "data": {"a": 1}}}), 400, 400),
    ("v3-subject", "POST", PRODUCE, _json({"value": {"subject": "t-value", "data": {"a": 1}}}), 400, 400),
    ("v3-oversize", "POST", PRODUCE, _json({"value": {"type": "STRING", "data": "x" * 101}}), 413, 413),
    ("v3-oversize-key-and-value", "POST", PRODUCE,
     _json({"key": {"type": "STRING", "data": "k" * 60}, "value": {"type": "STRING", "data": "v" * 60}}), 413, 413),
    ("v3-oversize-one-of-batch-same-partition", "POST", PRODUCE,
     _v3(concat({**GOOD, "partition_id": 0}, {"partition_id": 0, "value": {"type": "STRING", "data": "x" * 101}})),
     413, 413),
    # --- topics and partitions
    ("v3-unknown-topic", "POST", "{v3}/topics/nope/records", _json(GOOD), 404, 40401),
    ("batch-unknown-topic", "POST", "{v3}/topics/nope/records:batch", _json({"entries": [{"id": "a", **GOOD}]}),
     404, 40401),
    ("v3-get-unknown-topic", "GET", "{v3}/topics/nope", {}, 404, 40401),
    ("v3-patch-unknown-topic", "PATCH", "{v3}/topics/nope", _json({"partitions_count": 3}), 404, 40401),
    ("v3-delete-unknown-topic", "DELETE", "{v3}/topics/nope", {}, 404, 40401),
    ("v3-configs-unknown-topic", "GET", "{v3}/topics/nope/configs", {}, 404, 40401),
    ("v2-get-unknown-topic", "GET", "/topics/nope", {}, 404, 40401),
    ("v3-unknown-partition", "POST", PRODUCE, _json({**GOOD, "partition_id": 3}), 404, 40402),
    ("v3-negative-partition", "POST", PRODUCE, _json({**GOOD, "partition_id": -1}), 404, 40402),
    ("v3-unknown-partition-second-record", "POST", PRODUCE, _v3(concat(GOOD, {**GOOD, "partition_id": 7})),
     404, 40402),
    ("v3-get-unknown-partition", "GET", "{v3}/topics/t/partitions/3", {}, 404, 40402),
    ("v3-get-negative-partition", "GET", "{v3}/topics/t/partitions/-1", {}, 404, 40402),
    ("v2-produce-unknown-partition", "POST", "/topics/t/partitions/3",
     _json({"records": [{"value": 1}]}, V2_EMBEDDED_JSON), 404, 40402),
    ("v2-produce-negative-partition", "POST", "/topics/t/partitions/-1",
     _json({"records": [{"value": 1}]}, V2_EMBEDDED_JSON), 404, 40402),
    ("v2-record-unknown-partition", "POST", "/topics/t",
     _json({"records": [{"value": 1}, {"value": 2, "partition": 9}]}, V2_EMBEDDED_JSON), 404, 40402),
    ("v2-read-negative-partition", "GET", "/topics/t/partitions/-1/records", {}, 404, 40402),
    ("create-invalid-topic-name", "POST", TOPICS, _json({"topic_name": "bad name"}), 400, 40002),
    ("create-dot-topic-name", "POST", TOPICS, _json({"topic_name": ".."}), 400, 40002),
    ("create-long-topic-name", "POST", TOPICS, _json({"topic_name": "x" * 250}), 400, 40002),
    ("create-topic-name-not-string", "POST", TOPICS, _json({"topic_name": 5}), 422, 42206),
    ("create-no-topic-name", "POST", TOPICS, _json({"partitions_count": 1}), 422, 42206),
    ("create-unknown-field", "POST", TOPICS, _json({"topic_name": "t2", "partitions": 3}), 422, 42206),
    ("v2-produce-invalid-topic-name", "POST", "/topics/bad%20name",
     _json({"records": [{"value": 1}]}, V2_EMBEDDED_JSON), 400, 40002),
    ("create-existing", "POST", TOPICS, _json({"topic_name": "t"}), 400, 40002),
    ("create-zero-partitions", "POST", TOPICS, _json({"topic_name": "t2", "partitions_count": 0}), 400, 40002),
    ("create-too-many-partitions", "POST", TOPICS, _json({"topic_name": "t2", "partitions_count": 10**7}),
     400, 40002),
    ("create-rf-above-brokers", "POST", TOPICS, _json({"topic_name": "t2", "replication_factor": 4}), 400, 40002),
    ("create-rf-string", "POST", TOPICS, _json({"topic_name": "t2", "replication_factor": "1"}), 400, 40002),
    ("create-bad-assignment", "POST", TOPICS, _json({"topic_name": "t2", "replicas_assignments": {"0": [1, 1]}}),
     400, 40002),
    ("patch-shrink", "PATCH", "{v3}/topics/t", _json({"partitions_count": 2}), 400, 40002),
    ("patch-same", "PATCH", "{v3}/topics/t", _json({"partitions_count": 3}), 400, 40002),
    ("patch-not-int", "PATCH", "{v3}/topics/t", _json({"partitions_count": "5"}), 400, 40002),
    ("patch-other-field", "PATCH", "{v3}/topics/t", _json({"replication_factor": 2}), 422, 42206),
    # --- configs
    ("create-invalid-config-value", "POST", TOPICS,
     _json({"topic_name": "t2", "configs": [{"name": "retention.ms", "value": "abc"}]}), 400, 40002),
    ("create-unknown-config", "POST", TOPICS,
     _json({"topic_name": "t2", "configs": [{"name": "nope.nope", "value": "1"}]}), 400, 40002),
    ("create-compact", "POST", TOPICS,
     _json({"topic_name": "t2", "configs": [{"name": "cleanup.policy", "value": "compact"}]}), 400, 40002),
    ("create-configs-not-list", "POST", TOPICS, _json({"topic_name": "t2", "configs": {"retention.ms": "1"}}),
     422, 42206),
    ("put-invalid-config-value", "PUT", "{v3}/topics/t/configs/retention.ms", _json({"value": "-7"}), 400, 40002),
    ("put-config-value-not-string", "PUT", "{v3}/topics/t/configs/retention.ms", _json({"value": [1]}), 400, 40002),
    ("put-unknown-config", "PUT", "{v3}/topics/t/configs/nope.nope", _json({"value": "1"}), 400, 40002),
    ("put-config-no-value", "PUT", "{v3}/topics/t/configs/retention.ms", _json({}), 422, 42206),
    # The REST Proxy answers 404 for a config it does not know on GET and DELETE.
    ("delete-unknown-config", "DELETE", "{v3}/topics/t/configs/nope.nope", {}, 404, 404),
    ("get-unknown-config", "GET", "{v3}/topics/t/configs/nope.nope", {}, 404, 404),
    ("put-config-null-value", "PUT", "{v3}/topics/t/configs/retention.ms", _json({"value": None}), 422, 42206),
    ("alter-one-bad", "POST", "{v3}/topics/t/configs:alter",
     _json({"data": [{"name": "retention.ms", "value": "1000"}, {"name": "max.message.bytes", "value": "big"}]}),
     400, 40002),
    ("alter-one-unknown", "POST", "{v3}/topics/t/configs:alter",
     _json({"data": [{"name": "retention.ms", "value": "1000"}, {"name": "nope.nope", "value": "1"}]}), 400, 40002),
    ("alter-bad-operation", "POST", "{v3}/topics/t/configs:alter",
     _json({"data": [{"name": "retention.ms", "value": "1000", "operation": "APPEND"}]}), 422, 42206),
    ("alter-set-without-value", "POST", "{v3}/topics/t/configs:alter", _json({"data": [{"name": "retention.ms"}]}),
     422, 42206),
    # --- media types
    ("v3-wrong-content-type", "POST", PRODUCE, _v3(orjson.dumps(GOOD), "text/plain"), 415, 415),
    ("v3-v2-content-type", "POST", PRODUCE, _v3(orjson.dumps(GOOD), V2_EMBEDDED_JSON), 415, 415),
    ("create-wrong-content-type", "POST", TOPICS, _v3('{"topic_name": "t2"}', "application/xml"), 415, 415),
    ("batch-wrong-content-type", "POST", BATCH, _v3('{"entries": []}', "text/plain"), 415, 415),
    ("v2-wrong-content-type", "POST", "/topics/t", _v3('{"records": [{"value": 1}]}', "text/plain"), 415, 415),
    ("v2-avro-content-type", "POST", "/topics/t",
     _v3('{"records": [{"value": 1}]}', "application/vnd.kafka.avro.v2+json"), 415, 415),
    ("v2-unacceptable-accept", "GET", "/topics", {"headers": {"Accept": "text/html"}}, 406, 406),
    ("v2-produce-unacceptable-accept", "POST", "/topics/t",
     _json({"records": [{"value": 1}]}, V2_EMBEDDED_JSON, headers={"Accept": "text/html"}), 406, 406),
    ("v2-read-unacceptable-accept", "GET", "/topics/t/partitions/0/records", {"headers": {"Accept": "image/png"}},
     406, 406),
    # --- query parameters
    ("v3-bad-acks", "POST", PRODUCE + "?acks=2", _json(GOOD), 400, 400),
    ("v3-bad-acks-word", "POST", PRODUCE + "?acks=leader", _json(GOOD), 400, 400),
    ("v3-bad-timeout", "POST", PRODUCE + "?timeout_ms=soon", _json(GOOD), 400, 400),
    ("v3-negative-timeout", "POST", PRODUCE + "?timeout_ms=-1", _json(GOOD), 400, 400),
    ("batch-bad-acks", "POST", BATCH + "?acks=3", _json({"entries": [{"id": "a", **GOOD}]}), 400, 400),
    ("v2-bad-acks", "POST", "/topics/t?acks=5", _json({"records": [{"value": 1}]}, V2_EMBEDDED_JSON), 400, 400),
    ("v2-read-negative-offset", "GET", "/topics/t/partitions/0/records?offset=-1", {}, 400, 400),
    ("v2-read-offset-not-int", "GET", "/topics/t/partitions/0/records?offset=first", {}, 400, 400),
    ("v2-read-beyond-end", "GET", "/topics/t/partitions/0/records?offset=1000", {}, 416, 416),
    ("v2-read-zero-max-bytes", "GET", "/topics/t/partitions/0/records?max_bytes=0", {}, 400, 400),
    ("v2-read-bad-isolation", "GET", "/topics/t/partitions/0/records?isolation_level=dirty", {}, 400, 400),
    ("v3-bad-offset-type", "GET", "{v3}/topics/t/partitions/0/offset?offset_type=middle", {}, 400, 400),
    # --- cluster ids
    ("v3-produce-unknown-cluster", "POST", "/v3/clusters/nope/topics/t/records", _json(GOOD), 404, 404),
    ("batch-unknown-cluster", "POST", "/v3/clusters/nope/topics/t/records:batch",
     _json({"entries": [{"id": "a", **GOOD}]}), 404, 404),
    ("create-unknown-cluster", "POST", "/v3/clusters/nope/topics", _json({"topic_name": "t2"}), 404, 404),
    ("delete-unknown-cluster", "DELETE", "/v3/clusters/nope/topics/t", {}, 404, 404),
    ("put-config-unknown-cluster", "PUT", "/v3/clusters/nope/topics/t/configs/retention.ms",
     _json({"value": "1"}), 404, 404),
    ("unknown-broker", "GET", "{v3}/brokers/99", {}, 404, None),
    # --- v2 bodies
    ("v2-empty-records", "POST", "/topics/t", _json({"records": []}, V2_EMBEDDED_JSON), 422, 422),
    ("v2-no-records", "POST", "/topics/t", _json({}, V2_EMBEDDED_JSON), 422, 422),
    ("v2-empty-body", "POST", "/topics/t", _v3("", V2_EMBEDDED_JSON), 422, 422),
    ("v2-malformed", "POST", "/topics/t", _v3('{"records": [', V2_EMBEDDED_JSON), 400, 400),
    ("v2-deeply-nested", "POST", "/topics/t", _v3("[" * 100_000, V2_EMBEDDED_JSON), 400, 400),
    ("v2-body-not-object", "POST", "/topics/t", _json([{"value": 1}], V2_EMBEDDED_JSON), 422, 422),
    ("v2-records-not-list", "POST", "/topics/t", _json({"records": {"value": 1}}, V2_EMBEDDED_JSON), 422, 422),
    ("v2-record-not-object", "POST", "/topics/t", _json({"records": [1]}, V2_EMBEDDED_JSON), 422, 422),
    ("v2-unknown-record-field", "POST", "/topics/t", _json({"records": [{"valeu": 1}]}, V2_EMBEDDED_JSON), 422, 422),
    ("v2-unknown-body-field", "POST", "/topics/t", _json({"records": [{"value": 1}], "x": 1}, V2_EMBEDDED_JSON),
     422, 422),
    ("v2-bad-base64", "POST", "/topics/t", _json({"records": [{"value": "Message$"}]}, V2_EMBEDDED_BINARY),
     422, 42203),
    ("v2-bad-base64-second", "POST", "/topics/t",
     _json({"records": [{"value": "eA=="}, {"key": "%%", "value": "eA=="}]}, V2_EMBEDDED_BINARY), 422, 42203),
    ("v2-binary-not-string", "POST", "/topics/t", _json({"records": [{"value": 5}]}, V2_EMBEDDED_BINARY),
     422, 42203),
    ("v2-partition-not-int", "POST", "/topics/t", _json({"records": [{"value": 1, "partition": "0"}]},
                                                        V2_EMBEDDED_JSON), 422, 422),
    ("v2-timestamp-not-int", "POST", "/topics/t", _json({"records": [{"value": 1, "timestamp": "now"}]},
                                                        V2_EMBEDDED_JSON), 422, 422),
    ("v2-timestamp-overflow", "POST", "/topics/t", _json({"records": [{"value": 1, "timestamp": 2**63}]},
                                                         V2_EMBEDDED_JSON), 422, 422),
    ("v2-value-schema", "POST", "/topics/t",
     _json({"value_schema": '{"type":"string"}', "records": [{"value": "x"}]}, V2_EMBEDDED_JSON), 422, 42205),
    ("v2-oversize", "POST", "/topics/t", _json({"records": [{"value": b64(b"x" * 101)}]}, V2_EMBEDDED_BINARY),
     413, 413),
    ("v2-bad-headers", "POST", "/topics/t", _json({"records": [{"value": 1, "headers": "h"}]}, V2_EMBEDDED_JSON),
     422, 42203),
]


@pytest.fixture
def populated(server, create_topic, produce):
    create_topic("t", partitions=3, replication_factor=1, max_message_bytes="100")
    create_topic("rf3", partitions=2, replication_factor=3)
    for p in range(3):
        produce("t", [b"seed-1", b"seed-2"], partition=p)
    produce("rf3", [b"seed"], partition=1)


@pytest.mark.parametrize("case_id,method,path,kwargs,status,error_code", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_a_clean_4xx_and_writes_nothing(client, v3, populated, log_end_offsets, server,
                                                        case_id, method, path, kwargs, status, error_code):
    before = log_end_offsets()
    configs_before = server.controller.describe_configs("t")
    resp = client.open(path.format(v3=v3), method=method, **kwargs)
    body = assert_error(resp, status, error_code)
    assert set(body) <= {"error_code", "message", "kafka_error"}
    assert log_end_offsets() == before
    assert server.controller.describe_configs("t") == configs_before


def test_sweep_covers_every_case_once():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_good_request_changes_the_snapshot(client, v3, populated, log_end_offsets):
    """The sweep's 'nothing written' check can see a write."""
    before = log_end_offsets()
    resp = client.post(f"{v3}/topics/t/records", json={**GOOD, "partition_id": 1})
    assert resp.status_code == 200
    after = log_end_offsets()
    assert after != before
    changed = [k for k in after if k in before and after[k] != before[k]]
    assert len(changed) == 1 and after[changed[0]][1] == before[changed[0]][1] + 1


def test_v2_request_with_v2_json_accept_is_fine(client, populated):
    r = client.get("/topics", headers={"Accept": V2_JSON})
    assert r.status_code == 200
