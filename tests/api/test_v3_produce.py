"""v3 produce: delivery reports as the REST Proxy writes them, records stored byte-exact
(read back with the v2 stateless read), partition routing, records:batch and acks."""
from __future__ import annotations

import time

import orjson
import pytest

from service.partitioner import partition_for_key
from tests.api.helpers import assert_error, b64, reports, unb64


def _read_all(read_v2, topic, partition=0, offset=0):
    r = read_v2(topic, partition, offset)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_single_record_report(produce_v3, create_topic, cluster_id, clock):
    create_topic("t")
    r = produce_v3("t", {"value": {"type": "JSON", "data": {"name": "testUser"}}})
    assert r.mimetype == "application/json"
    [report] = reports(r)
    assert report == {"error_code": 200, "cluster_id": cluster_id, "topic_name": "t", "partition_id": 0,
                      "offset": 0, "timestamp": "2023-11-14T22:13:20.000Z",  # MockClock's start
                      "value": {"type": "JSON", "size": 19}}
    assert clock.milliseconds() == 1_700_000_000_000


def test_concatenated_records_get_one_report_each_in_order(produce_v3, create_topic, read_v2):
    create_topic("t")
    r = produce_v3("t", {"value": {"type": "JSON", "data": "ONE"}}, {"value": {"type": "JSON", "data": "TWO"}},
                   {"value": {"type": "JSON", "data": "THREE"}})
    got = reports(r)
    assert [(x["offset"], x["value"]) for x in got] == [
        (0, {"type": "JSON", "size": 5}), (1, {"type": "JSON", "size": 5}), (2, {"type": "JSON", "size": 7})]
    assert [unb64(x["value"]) for x in _read_all(read_v2, "t")] == [b'"ONE"', b'"TWO"', b'"THREE"']


@pytest.mark.parametrize("data,stored", [
    ({"type": "JSON", "data": {"name": "testUser"}}, b'{"name":"testUser"}'),
    ({"type": "JSON", "data": "ONE"}, b'"ONE"'),
    ({"type": "JSON", "data": [1, 2.5, None, True]}, b"[1,2.5,null,true]"),
    ({"type": "JSON", "data": 53}, b"53"),
    ({"type": "JSON", "data": None}, b"null"),
    ({"type": "STRING", "data": "REST"}, b"REST"),
    ({"type": "STRING", "data": "ünï 🦄"}, "ünï 🦄".encode()),
    ({"type": "STRING", "data": ""}, b""),
    ({"type": "BINARY", "data": b64(b"\x00\x01\xfe\xff")}, b"\x00\x01\xfe\xff"),
    ({"type": "BINARY", "data": ""}, b""),
    ({"data": b64(b"untyped is binary")}, b"untyped is binary"),
    ({"type": "binary", "data": b64(b"case")}, b"case"),
])
def test_key_and_value_types_sizes_and_bytes(produce_v3, create_topic, read_v2, data, stored):
    create_topic("t")
    [report] = reports(produce_v3("t", {"partition_id": 0, "key": data, "value": data}))
    expected = {"type": (data.get("type") or "BINARY").upper(), "size": len(stored)}
    assert report["key"] == expected and report["value"] == expected
    [record] = _read_all(read_v2, "t")
    assert unb64(record["key"]) == stored and unb64(record["value"]) == stored


def test_null_key_and_value(produce_v3, create_topic, read_v2):
    create_topic("t")
    [a, b] = reports(produce_v3("t", {"value": {"type": "BINARY", "data": None}}, {}))
    assert a["value"] == {"type": "BINARY", "size": 0} and "key" not in a
    assert "key" not in b and "value" not in b
    records = _read_all(read_v2, "t")
    assert [(x["key"], x["value"]) for x in records] == [(None, None), (None, None)]


def test_headers_round_trip(produce_v3, create_topic, read_v2):
    create_topic("t")
    headers = [{"name": "Header-1", "value": b64("one")}, {"name": "Header-2", "value": None},
               {"name": "Header-1", "value": b64(b"\x00dup")}]
    reports(produce_v3("t", {"headers": headers, "value": {"type": "STRING", "data": "x"}}))
    [record] = _read_all(read_v2, "t")
    assert record["headers"] == headers


@pytest.mark.parametrize("sent,ms,out", [
    ("2021-02-05T19:14:42Z", 1612552482000, "2021-02-05T19:14:42.000Z"),
    ("2021-02-05T19:14:42.123Z", 1612552482123, "2021-02-05T19:14:42.123Z"),
    ("1970-07-18T18:53:14.764Z", 17175194764, "1970-07-18T18:53:14.764Z"),
    ("2021-02-05T20:14:42.5+01:00", 1612552482500, "2021-02-05T19:14:42.500Z"),
    ("2021-02-05T19:14:42", 1612552482000, "2021-02-05T19:14:42.000Z"),
    ("1970-01-01T00:00:00Z", 0, "1970-01-01T00:00:00.000Z"),
    ("9999-12-31T23:59:59.999Z", 253402300799999, "9999-12-31T23:59:59.999Z"),
])
def test_timestamp_iso_in_and_out(produce_v3, create_topic, read_v2, sent, ms, out):
    create_topic("t")
    [report] = reports(produce_v3("t", {"timestamp": sent, "value": {"type": "STRING", "data": "x"}}))
    assert report["timestamp"] == out
    assert _read_all(read_v2, "t")[0]["timestamp"] == ms


def test_timestamps_keep_milliseconds_exactly(produce_v3, create_topic, read_v2):
    """Every millisecond of a second survives ISO in, storage and ISO out."""
    create_topic("t")
    sent = [f"2024-02-29T23:59:59.{ms:03d}Z" for ms in range(1000)]
    got = reports(produce_v3("t", *[{"timestamp": s, "value": {"type": "STRING", "data": "x"}} for s in sent]))
    assert [x["timestamp"] for x in got] == sent
    assert [x["timestamp"] % 1000 for x in _read_all(read_v2, "t")] == list(range(1000))


def test_log_append_time_topic_reports_the_append_time(produce_v3, create_topic, clock):
    create_topic("t", message_timestamp_type="LogAppendTime")
    clock.advance(1234)
    [report] = reports(produce_v3("t", {"timestamp": "2021-02-05T19:14:42Z", "value": {"type": "STRING", "data": "x"}}))
    assert report["timestamp"] == "2023-11-14T22:13:21.234Z"


def test_partition_id_is_honoured(produce_v3, create_topic, read_v2):
    create_topic("t", partitions=3)
    got = reports(produce_v3("t", *[{"partition_id": p, "key": {"type": "STRING", "data": "same-key"},
                                     "value": {"type": "STRING", "data": f"to-{p}"}} for p in (2, 0, 2, 1)]))
    assert [(x["partition_id"], x["offset"]) for x in got] == [(2, 0), (0, 0), (2, 1), (1, 0)]
    assert [unb64(x["value"]) for x in _read_all(read_v2, "t", 2)] == [b"to-2", b"to-2"]


@pytest.mark.parametrize("key_type,key_data,key_bytes", [
    ("STRING", "user-42", b"user-42"),
    ("BINARY", b64(b"\x00\xffbinary-key"), b"\x00\xffbinary-key"),
    ("JSON", {"id": 42}, b'{"id":42}'),
])
def test_keyed_records_land_on_the_murmur2_partition(produce_v3, create_topic, key_type, key_data, key_bytes):
    create_topic("t", partitions=7)
    expected = partition_for_key(key_bytes, 7)
    got = reports(produce_v3("t", *[{"key": {"type": key_type, "data": key_data},
                                     "value": {"type": "STRING", "data": str(i)}} for i in range(5)]))
    assert {x["partition_id"] for x in got} == {expected}
    assert [x["offset"] for x in got] == [0, 1, 2, 3, 4]


def test_many_keys_follow_kafkas_partitioner(produce_v3, create_topic):
    create_topic("t", partitions=6)
    keys = [f"customer-{i}" for i in range(60)]
    got = reports(produce_v3("t", *[{"key": {"type": "STRING", "data": k}} for k in keys]))
    assert [x["partition_id"] for x in got] == [partition_for_key(k.encode(), 6) for k in keys]


def test_unkeyed_records_spread_over_partitions(produce_v3, create_topic):
    create_topic("t", partitions=3)
    got = reports(produce_v3("t", *[{"value": {"type": "STRING", "data": str(i)}} for i in range(6)]))
    assert sorted(x["partition_id"] for x in got) == [0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------------ records:batch
def test_records_batch_207_with_successes_and_failures(client, v3, create_topic, read_v2, server):
    create_topic("t")
    r = client.post(f"{v3}/topics/t/records:batch", json={"entries": [
        {"id": "first", "value": {"type": "JSON", "data": "ONE"}},
        {"id": "bad", "value": {"type": "BINARY", "data": "Message$"}},
        {"id": "second", "value": {"type": "STRING", "data": "TWO"}},
        {"id": "nowhere", "partition_id": 5, "value": {"type": "STRING", "data": "x"}},
    ]})
    assert r.status_code == 207
    body = r.get_json()
    assert [(s["id"], s["offset"], s["value"]) for s in body["successes"]] == [
        ("first", 0, {"type": "JSON", "size": 5}), ("second", 1, {"type": "STRING", "size": 3})]
    assert all(s["error_code"] == 200 and s["topic_name"] == "t" for s in body["successes"])
    failures = {f["id"]: f for f in body["failures"]}
    assert set(failures) == {"bad", "nowhere"}
    assert failures["bad"]["error_code"] == 400 and "base64" in failures["bad"]["message"]
    assert failures["nowhere"]["error_code"] == 40402
    assert [unb64(x["value"]) for x in _read_all(read_v2, "t")] == [b'"ONE"', b"TWO"]


@pytest.mark.parametrize("body", [
    {"entries": []},
    {"entries": [{"id": "a"}, {"id": "a"}]},
    {"entries": [{"value": {"type": "STRING", "data": "no id"}}]},
    {"entries": [{"id": "x" * 81}]},
])
def test_records_batch_request_errors(client, v3, create_topic, body, log_end_offsets):
    create_topic("t")
    before = log_end_offsets()
    assert_error(client.post(f"{v3}/topics/t/records:batch", json=body), 422, 42208)
    assert log_end_offsets() == before


# ------------------------------------------------------------------------ acks
def test_acks_0_returns_offset_minus_1_and_the_record_appears(produce_v3, create_topic, read_v2):
    create_topic("t")
    [report] = reports(produce_v3("t", {"value": {"type": "STRING", "data": "fire and forget"}}, acks="0"))
    assert report["offset"] == -1 and report["error_code"] == 200
    deadline = time.monotonic() + 5
    records = []
    while time.monotonic() < deadline and not records:
        records = _read_all(read_v2, "t")
        time.sleep(0.01)
    assert [unb64(x["value"]) for x in records] == [b"fire and forget"]


@pytest.mark.parametrize("acks", ["1", "all", "-1"])
def test_acks_on_rf1(produce_v3, create_topic, read_v2, acks):
    create_topic("t")
    [report] = reports(produce_v3("t", {"value": {"type": "STRING", "data": "x"}}, acks=acks))
    assert report["offset"] == 0
    assert len(_read_all(read_v2, "t")) == 1


def test_acks_all_with_too_small_isr_is_503_and_writes_nothing(produce_v3, create_topic, shrink_isr,
                                                                  log_end_offsets):
    create_topic("t", partitions=2, replication_factor=3)
    shrink_isr("t")
    before = log_end_offsets()
    r = produce_v3("t", {"partition_id": 0, "value": {"type": "STRING", "data": "x"}},
                   {"partition_id": 1, "value": {"type": "STRING", "data": "y"}}, acks="all")
    body = assert_error(r, 503)
    assert body["kafka_error"] == "NOT_ENOUGH_REPLICAS"
    assert r.headers["Retry-After"]
    assert log_end_offsets() == before


@pytest.mark.parametrize("config", [{"acks": "all"}], indirect=True)
def test_configured_default_acks(produce_v3, create_topic, shrink_isr):
    create_topic("t", replication_factor=3)
    shrink_isr("t")
    assert_error(produce_v3("t", {"value": {"type": "STRING", "data": "x"}}), 503)
    assert reports(produce_v3("t", {"value": {"type": "STRING", "data": "x"}}, acks="1"))[0]["offset"] == 0


def test_failure_on_one_partition_is_reported_per_record(produce_v3, create_topic, server):
    """A record too large for its partition fails alone; the other partition's record is
    written, and each record gets its own report."""
    create_topic("t", partitions=2, max_message_bytes="10")
    got = reports(produce_v3("t", {"partition_id": 0, "value": {"type": "STRING", "data": "small"}},
                             {"partition_id": 1, "value": {"type": "STRING", "data": "far too large"}}))
    assert got[0]["error_code"] == 200 and got[0]["offset"] == 0
    assert got[1]["error_code"] == 413 and got[1]["message"]
    topic = server.controller.topic("t")
    assert server.replica_manager.offsets(topic, 1).log_end_offset == 0


def test_report_is_valid_json_lines(produce_v3, create_topic):
    create_topic("t")
    r = produce_v3("t", {"value": {"type": "STRING", "data": "a"}}, {"value": {"type": "STRING", "data": "b"}})
    assert r.get_data().endswith(b"\r\n")
    assert all(isinstance(orjson.loads(line), dict) for line in r.get_data().split(b"\r\n") if line)
