"""Error answers become messages with the Kafka error name and an exit status by kind."""
from __future__ import annotations

import socket

import pytest

from cli.http import DlogHTTPError, exit_code_for


@pytest.mark.parametrize("status,code", [(400, 2), (40002, 2), (409, 2), (413, 2), (416, 2), (422, 2),
                                         (404, 3), (40401, 3), (40402, 3), (503, 4), (50003, 4), (504, 5),
                                         (500, 1), (50002, 1), (302, 1)])
def test_exit_code_for(status, code):
    assert exit_code_for(status) == code


def test_message_names_the_kafka_error():
    exc = DlogHTTPError("Topic 'x' not found.", 404, 40401, "UNKNOWN_TOPIC_OR_PARTITION")
    assert exc.format_message() == "Topic 'x' not found. (UNKNOWN_TOPIC_OR_PARTITION, HTTP 404)"
    assert exc.exit_code == 3


def test_unknown_topic_exit_3(dlog, topic_name):
    for args in (("topic", "describe", topic_name), ("consume", topic_name, "-e"),
                 ("topic", "delete", topic_name), ("produce", topic_name)):
        result = dlog(*args, input="x\n")
        assert result.exit_code == 3, args
        assert "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr, args
        assert topic_name in result.stderr, args


def test_not_enough_replicas_is_retriable_exit_4(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/topics/t"
    s.on("GET", base, 200, {"topic_name": "t", "partitions_count": 1})
    s.on("POST", f"{base}/records", 503, {"error_code": 503, "kafka_error": "NOT_ENOUGH_REPLICAS",
                                            "message": "The in-sync replicas of t-0 are [0], fewer than 2."})
    result = dlog("produce", "t", "--acks", "all", input="a\n")
    assert result.exit_code == 4
    assert "NOT_ENOUGH_REPLICAS" in result.stderr and "fewer than 2" in result.stderr
    assert s.requests[-1][2] == {"acks": "all"}


def test_request_timed_out_exit_5(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/topics/t"
    s.on("GET", base, 200, {"topic_name": "t", "partitions_count": 1})
    s.on("POST", f"{base}/records", 504, {"error_code": 504, "kafka_error": "REQUEST_TIMED_OUT",
                                            "message": "The request timed out; the outcome is unknown."})
    result = dlog("produce", "t", input="a\nb\n")
    assert result.exit_code == 5
    assert "REQUEST_TIMED_OUT" in result.stderr
    assert "may or may not have been written" in result.stderr


def test_acks_default_is_the_servers(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/topics/t"
    s.on("GET", base, 200, {"topic_name": "t", "partitions_count": 1})
    s.on("POST", f"{base}/records", 200, {"error_code": 200, "partition_id": 0, "offset": 0})
    assert dlog("produce", "t", input="a\n").exit_code == 0
    assert s.requests[-1] == ("POST", f"{base}/records", {})  # no acks, no timeout_ms


def test_per_record_failures(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/topics/t"
    s.on("GET", base, 200, {"topic_name": "t", "partitions_count": 2})
    s.on("POST", f"{base}/records", 200,
         '{"error_code":200,"partition_id":0,"offset":5}\r\n'
         '{"error_code":503,"message":"no leader","kafka_error":"NOT_LEADER_OR_FOLLOWER"}\r\n')
    result = dlog("produce", "t", input="a\nb\n")
    assert result.exit_code == 4
    assert "1 of 2 records failed" in result.stderr and "NOT_LEADER_OR_FOLLOWER" in result.stderr
    assert "partition 0: 1 records, offsets 5..5" in result.stderr
    reports = dlog("produce", "t", "--json", "-q", input="a\nb\n").stdout.splitlines()
    assert reports[1] == ('{"line":2,"error_code":503,"message":"no leader",'
                          '"kafka_error":"NOT_LEADER_OR_FOLLOWER"}')


def test_report_count_mismatch(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/topics/t"
    s.on("GET", base, 200, {"topic_name": "t", "partitions_count": 1})
    s.on("POST", f"{base}/records", 200, '{"error_code":200,"partition_id":0,"offset":5}')
    result = dlog("produce", "t", input="a\nb\n")
    assert result.exit_code == 1 and "1 delivery reports for 2 records" in result.stderr


def test_html_error_body(stub):
    s, dlog = stub
    s.on("GET", f"/v3/clusters/{s.CLUSTER}/topics", 502, None)
    result = dlog("topic", "list")
    assert result.exit_code == 1 and "HTTP 502" in result.stderr


def test_unreachable_server_exit_4(dlog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = dlog("topic", "list", "--url", f"http://127.0.0.1:{port}", url_arg=False)
    assert result.exit_code == 4
    assert "Cannot reach dlog" in result.stderr and "DLOG_URL" in result.stderr


def test_url_from_environment(dlog, dlog_url):
    result = dlog("broker", "list", url_arg=False, env={"DLOG_URL": dlog_url})
    assert result.exit_code == 0 and "STATUS" in result.stdout


def test_show_curl(dlog, dlog_url):
    result = dlog("topic", "list", "--show-curl")
    assert result.exit_code == 0
    assert f"curl -sS {dlog_url}/v3/clusters" in result.stderr


def _partition_stub(s, records: dict[int, list[int]], log_start: list[int], hw: int):
    """A one-partition topic ``t`` whose reads at offset N return the offsets ``records[N]``
    (or 416 when N is below the current ``log_start[0]``)."""
    base = f"/v3/clusters/{s.CLUSTER}/topics/t/partitions"

    def partition():
        return {"topic_name": "t", "partition_id": 0, "log_start_offset": log_start[0], "high_watermark": hw,
                "last_stable_offset": hw}

    s.on("GET", base, handler=lambda req: (200, {"data": [partition()]}))
    s.on("GET", f"{base}/0", handler=lambda req: (200, partition()))

    def read(req):
        offset = int(req.args["offset"])
        if offset < log_start[0]:
            return 416, {"error_code": 416, "kafka_error": "OFFSET_OUT_OF_RANGE", "message": "out of range"}
        return 200, [{"topic": "t", "partition": 0, "offset": o, "key": None, "value": "dg==", "timestamp": 1,
                      "headers": None} for o in records.get(offset, [])]

    s.on("GET", "/topics/t/partitions/0/records", handler=read)


def test_consume_steps_over_invisible_records(stub):
    """A transaction marker (or an aborted record under read_committed) is never returned: the
    reader steps over it once the end offset shows there is more."""
    s, dlog = stub
    _partition_stub(s, {0: [0], 1: [], 2: [2, 3], 3: [3]}, [0], 4)
    result = dlog("consume", "t", "-e", "-f", r"%o\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["0", "2", "3"]
    follow = dlog("consume", "t", "-n", "3", "--poll-ms", "0", "-f", r"%o\n")
    assert follow.stdout.split() == ["0", "2", "3"]


def test_consume_recovers_from_offset_out_of_range(stub):
    s, dlog = stub
    log_start = [0]
    _partition_stub(s, {3: [3, 4], 4: [4]}, log_start, 5)
    log_start[0] = 3  # retention removed 0..2 after the bounds were read
    s.routes[("GET", f"/v3/clusters/{s.CLUSTER}/topics/t/partitions")] = lambda req: (200, {"data": [
        {"topic_name": "t", "partition_id": 0, "log_start_offset": 0, "high_watermark": 5, "last_stable_offset": 5}]})
    result = dlog("consume", "t", "-e", "-f", r"%o\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["3", "4"]
    assert "offset 0 is out of range" in result.stderr and "continuing at 3" in result.stderr


def test_answer_that_is_not_json(stub):
    s, dlog = stub
    s.on("GET", f"/v3/clusters/{s.CLUSTER}/brokers", 200, "<html>not dlog</html>")
    result = dlog("broker", "list")
    assert result.exit_code == 1 and "without JSON" in result.stderr
