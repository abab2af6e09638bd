"""``dlog produce`` and ``dlog consume`` against a real server."""
from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import requests


def consume_json(dlog, topic: str, *args: str) -> list[dict]:
    result = dlog("consume", topic, "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def produce_lines(dlog, topic: str, lines: list[str], *args: str):
    result = dlog("produce", topic, *args, input="".join(line + "\n" for line in lines))
    assert result.exit_code == 0, result.output
    return result


def post_records(url: str, topic: str, values: list[str], partition: int = 0) -> None:
    """Produce from another thread without the CLI (CliRunner swaps the process's stdio)."""
    cid = requests.get(f"{url}/v3/clusters", timeout=10).json()["data"][0]["cluster_id"]
    body = "".join(json.dumps({"partition_id": partition, "value": {"type": "STRING", "data": v}}) for v in values)
    resp = requests.post(f"{url}/v3/clusters/{cid}/topics/{topic}/records", data=body,
                         headers={"Content-Type": "application/json"}, params={"acks": "1"}, timeout=10)
    assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------------------- produce
def test_produce_key_separator_and_headers(dlog, make_topic, topic_name):
    make_topic(topic_name)
    result = produce_lines(dlog, topic_name, ["k1:v1", "k2:v:2", "no separator", ":empty key"], "-k", ":",
                           "-H", "source=cli", "-H", "trace=abc=1")
    assert "produced 4 records" in result.stderr and "offsets 0..3" in result.stderr and "records/s" in result.stderr
    assert result.stdout == ""
    records = consume_json(dlog, topic_name, "-e")
    assert [(r["key"], r["value"]) for r in records] == [("k1", "v1"), ("k2", "v:2"), (None, "no separator"),
                                                         ("", "empty key")]
    assert records[0]["headers"] == [{"name": "source", "value": "cli"}, {"name": "trace", "value": "abc=1"}]
    assert [r["offset"] for r in records] == [0, 1, 2, 3]


def test_produce_tab_separator_fixed_key_and_partition(dlog, make_topic, topic_name):
    make_topic(topic_name, 3)
    produce_lines(dlog, topic_name, ["a\t1", "2"], "-k", r"\t", "--key", "fixed", "-p", "2", "--acks", "1")
    records = consume_json(dlog, topic_name, "-e")
    assert [(r["partition"], r["key"], r["value"]) for r in records] == [(2, "a", "1"), (2, "fixed", "2")]


def test_produce_batches_and_json_reports(dlog, make_topic, topic_name):
    make_topic(topic_name, 2)
    lines = [f"key{i}:value{i}" for i in range(1203)]
    result = produce_lines(dlog, topic_name, lines, "-k", ":", "--batch-size", "500", "--json")
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == 1203 and [r["line"] for r in reports] == list(range(1, 1204))
    assert all(r["partition"] in (0, 1) and r["offset"] >= 0 for r in reports)
    summary = json.loads(result.stderr)
    assert summary["records"] == 1203 and summary["failed"] == 0
    assert sum(p["records"] for p in summary["partitions"].values()) == 1203
    # keys land where Kafka's partitioner puts them: the same key, the same partition
    by_key = {lines[r["line"] - 1].split(":")[0]: r["partition"] for r in reports}
    again = produce_lines(dlog, topic_name, ["key7:x", "key8:y"], "-k", ":", "--json")
    second = [json.loads(line) for line in again.stdout.splitlines()]
    assert [r["partition"] for r in second] == [by_key["key7"], by_key["key8"]]
    total = sum(len(consume_json(dlog, topic_name, "-e", "-p", str(p))) for p in (0, 1))
    assert total == 1205


def test_produce_from_file_and_binary_values(dlog, make_topic, topic_name, tmp_path):
    make_topic(topic_name)
    path = tmp_path / "in.txt"
    path.write_bytes(b"plain\n\xff\xfe raw\n\n")
    result = dlog("produce", topic_name, "--file", str(path))
    assert result.exit_code == 0, result.output
    records = consume_json(dlog, topic_name, "-e")
    assert records[0]["value"] == "plain"
    assert records[1]["value_encoding"] == "base64"
    assert base64.b64decode(records[1]["value"]) == b"\xff\xfe raw"
    assert records[2]["value"] == ""  # an empty line is an empty record, as kafka-console-producer
    raw = dlog("consume", topic_name, "-e", "-o", "1", "-n", "1")
    assert raw.stdout_bytes == b"\xff\xfe raw\n"


def test_produce_acks_zero(dlog, make_topic, topic_name):
    make_topic(topic_name)
    result = produce_lines(dlog, topic_name, ["a", "b"], "--acks", "0", "--json")
    assert [json.loads(line)["offset"] for line in result.stdout.splitlines()] == [-1, -1]
    deadline = time.monotonic() + 5
    while len(consume_json(dlog, topic_name, "-e")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(consume_json(dlog, topic_name, "-e")) == 2


def test_produce_errors(dlog, make_topic, topic_name):
    result = dlog("produce", topic_name, input="x\n")
    assert result.exit_code == 3
    assert "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr
    make_topic(topic_name, 2)
    result = dlog("produce", topic_name, "-p", "5", input="x\n")
    assert result.exit_code == 3 and "Partition 5" in result.stderr
    assert "its 1 records were not written" in result.stderr
    assert dlog("produce", topic_name, "-H", "novalue", input="x\n").exit_code == 2
    assert dlog("produce", topic_name, "--acks", "2", input="x\n").exit_code == 2
    assert dlog("produce", topic_name, "-k", "", input="x\n").exit_code == 2


def test_produce_empty_input(dlog, make_topic, topic_name):
    make_topic(topic_name)
    result = dlog("produce", topic_name, input="")
    assert result.exit_code == 0 and "produced 0 records" in result.stderr
    assert dlog("produce", topic_name, "-q", input="a\n").stderr == ""


def test_progress_bar_only_on_a_terminal(dlog, make_topic, topic_name, tmp_path, monkeypatch):
    make_topic(topic_name)
    path = tmp_path / "in.txt"
    path.write_text("a\nb\n")
    plain = dlog("produce", topic_name, "--file", str(path))
    assert "producing to" not in plain.stderr
    monkeypatch.setattr("cli.produce.stderr_is_tty", lambda: True)
    bar = dlog("produce", topic_name, "--file", str(path))
    assert bar.exit_code == 0 and "producing to" in bar.stderr


# ---------------------------------------------------------------------------- consume
@pytest.fixture
def ten(dlog, make_topic, topic_name) -> str:
    """A one-partition topic holding values v0..v9 at offsets 0..9."""
    make_topic(topic_name)
    produce_lines(dlog, topic_name, [f"k{i}:v{i}" for i in range(10)], "-k", ":")
    return topic_name


@pytest.mark.parametrize("offset,expected", [
    ("start", list(range(10))), ("oldest", list(range(10))), ("end", []), ("4", list(range(4, 10))),
    ("+3", list(range(3, 10))), ("-2", [8, 9]), ("-50", list(range(10))), ("99", []), ("2:5", [2, 3, 4]),
    (":end", list(range(10))), ("+1:-7", [1, 2]), ("-3:", [7, 8, 9]),
])
def test_consume_offset_forms(dlog, ten, offset, expected):
    records = consume_json(dlog, ten, "-e", "-o", offset)
    assert [r["offset"] for r in records] == expected
    assert [r["value"] for r in records] == [f"v{i}" for i in expected]


def test_consume_range_without_exit_stops_at_its_end(dlog, ten):
    # -o FROM:TO within the log ends without -e
    assert [r["offset"] for r in consume_json(dlog, ten, "-o", "5:7")] == [5, 6]


def test_consume_count(dlog, ten):
    assert [r["offset"] for r in consume_json(dlog, ten, "-e", "-n", "3")] == [0, 1, 2]
    assert [r["offset"] for r in consume_json(dlog, ten, "-o", "-4", "-n", "2")] == [6, 7]


def test_consume_format_tokens(dlog, ten, topic_name):
    result = dlog("consume", ten, "-e", "-o", "-2", "-f", r"%t|%p|%o|%k=%v|%K/%V|%H|%h|100%%\t.\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{ten}|0|8|k8=v8|2/2|0||100%\t.", f"{ten}|0|9|k9=v9|2/2|0||100%\t."]
    ts = dlog("consume", ten, "-e", "-n", "1", "-f", "%T %d").stdout.split()
    assert ts[0] == ts[1] and abs(int(ts[0]) / 1000 - time.time()) < 600
    default = dlog("consume", ten, "-e", "-o", "-1")
    assert default.stdout == "v9\n"


def test_consume_format_headers(dlog, make_topic, topic_name):
    make_topic(topic_name)
    produce_lines(dlog, topic_name, ["x"], "-H", "a=1", "-H", "b=2")
    result = dlog("consume", topic_name, "-e", "-f", r"%H %h %K\n")
    assert result.stdout == "2 a=1,b=2 -1\n"


def test_consume_bad_arguments(dlog, ten):
    assert dlog("consume", ten, "-f", "%z").exit_code == 2
    assert dlog("consume", ten, "-f", "%v", "--json").exit_code == 2
    assert dlog("consume", ten, "-o", "soon").exit_code == 2
    result = dlog("consume", ten, "-o", "@soon")
    assert result.exit_code == 2 and "is not a timestamp" in result.output
    assert dlog("consume", ten, "-p", "x").exit_code == 2


def test_consume_unknown_topic_and_partition_exit_3(dlog, ten, topic_name):
    result = dlog("consume", topic_name + "-none", "-e")
    assert result.exit_code == 3
    assert "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr
    result = dlog("consume", ten, "-p", "4", "-e")
    assert result.exit_code == 3 and "Partition 4" in result.stderr and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr


def test_consume_several_partitions(dlog, make_topic, topic_name):
    make_topic(topic_name, 3)
    for p in range(3):
        produce_lines(dlog, topic_name, [f"p{p}-{i}" for i in range(p + 1)], "-p", str(p))
    records = consume_json(dlog, topic_name, "-e")
    assert sorted((r["partition"], r["offset"]) for r in records) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    picked = consume_json(dlog, topic_name, "-e", "-p", "0,2")
    assert {r["partition"] for r in picked} == {0, 2} and len(picked) == 4
    assert len(consume_json(dlog, topic_name, "-e", "-p", "1", "-p", "2", "-o", "-1")) == 2


def test_consume_read_committed(dlog, ten):
    assert len(consume_json(dlog, ten, "-e", "--isolation-level", "read_committed")) == 10


def test_consume_follows_new_records(dlog, dlog_url, make_topic, topic_name):
    make_topic(topic_name, 2)
    produce_lines(dlog, topic_name, ["old"], "-p", "0")
    threading.Timer(0.5, post_records, (dlog_url, topic_name, ["new1", "new2"], 1)).start()
    records = consume_json(dlog, topic_name, "-o", "end", "-n", "2", "--poll-ms", "2000")
    assert [(r["partition"], r["value"]) for r in records] == [(1, "new1"), (1, "new2")]


def test_consume_range_beyond_the_end_waits_for_it(dlog, dlog_url, make_topic, topic_name):
    make_topic(topic_name)
    produce_lines(dlog, topic_name, ["a", "b"])
    threading.Timer(0.3, post_records, (dlog_url, topic_name, ["c", "d", "e"])).start()
    records = consume_json(dlog, topic_name, "-o", "1:4", "--poll-ms", "2000")
    assert [r["value"] for r in records] == ["b", "c", "d"]


def test_produce_consume_round_trip_through_format(dlog, make_topic, topic_name):
    make_topic(topic_name)
    lines = ["alpha:1", "beta:2", "gamma:3"]
    produce_lines(dlog, topic_name, lines, "-k", ":")
    result = dlog("consume", topic_name, "-e", "-f", r"%k:%v\n")
    assert result.stdout.splitlines() == lines
