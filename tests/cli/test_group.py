"""``dlog consume --group``, ``consume -o @timestamp`` and ``dlog group list|describe|seek|delete``."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def consume_json(dlog, topic: str, *args: str) -> list[dict]:
    result = dlog("consume", topic, "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def cluster_id(url: str) -> str:
    return requests.get(f"{url}/v3/clusters", timeout=10).json()["data"][0]["cluster_id"]


def post_timestamped(url: str, topic: str, partition: int, timestamps: list[int]) -> None:
    body = "".join(json.dumps({"partition_id": partition, "timestamp": ts, "value": {"type": "STRING",
                                                                                      "data": f"p{partition}@{ts}"}})
                   for ts in timestamps)
    resp = requests.post(f"{url}/v3/clusters/{cluster_id(url)}/topics/{topic}/records", data=body,
                         headers={"Content-Type": "application/json"}, params={"acks": "all"}, timeout=10)
    assert resp.status_code == 200, resp.text


def groups(url: str) -> list[str]:
    resp = requests.get(f"{url}/v3/clusters/{cluster_id(url)}/consumer-groups", timeout=10)
    return [g["consumer_group_id"] for g in resp.json()["data"]]


@pytest.fixture
def group_name(topic_name) -> str:
    return f"g-{topic_name}"[:200]


@pytest.fixture
def filled(dlog, make_topic, topic_name) -> str:
    """Two partitions: p0 holds 6 records, p1 holds 4."""
    make_topic(topic_name, 2)
    for p, n in ((0, 6), (1, 4)):
        result = dlog("produce", topic_name, "-p", str(p), input="".join(f"p{p}-{i}\n" for i in range(n)))
        assert result.exit_code == 0, result.output
    return topic_name


# ---------------------------------------------------------------------------- timestamps
@pytest.fixture
def timed(dlog_url, make_topic, topic_name) -> str:
    """Records with timestamps T0 + i seconds: i = 0..9 on p0, i = 0, 5 on p1."""
    make_topic(topic_name, 2)
    post_timestamped(dlog_url, topic_name, 0, [T0 + i * 1000 for i in range(10)])
    post_timestamped(dlog_url, topic_name, 1, [T0, T0 + 5000])
    return topic_name


@pytest.mark.parametrize("offset,expected", [
    (f"@{T0 + 3000}", {0: [3, 4, 5, 6, 7, 8, 9], 1: [1]}),
    (f"@{T0 + 3500}", {0: [4, 5, 6, 7, 8, 9], 1: [1]}),
    (f"@{(T0 + 7000) // 1000}", {0: [7, 8, 9], 1: []}),            # 10 digits: seconds
    ("@2023-11-14T22:13:28Z", {0: [8, 9], 1: []}),                  # ISO-8601, colons and all
    ("@2023-11-14T23:13:28+01:00", {0: [8, 9], 1: []}),            # with a zone
    (f"@{T0 + 2000}:@{T0 + 5000}", {0: [2, 3, 4], 1: []}),          # TO is exclusive
    ("@2023-11-14T22:13:22Z:@2023-11-14T22:13:26Z", {0: [2, 3, 4, 5], 1: [1]}),
    (f"@{T0 + 8000}:end", {0: [8, 9], 1: []}),
    (f"1:@{T0 + 3000}", {0: [1, 2], 1: []}),
    (f"@{T0 + 60_000}", {0: [], 1: []}),                            # after every record: the end
    ("@2020-01-01", {0: list(range(10)), 1: [0, 1]}),
    ("@-5m", {0: [], 1: []}),                                      # T0 is long ago
])
def test_consume_from_timestamp(dlog, dlog_url, timed, offset, expected):
    got = consume_json(dlog, timed, "-e", "-o", offset)
    assert {p: [r["offset"] for r in got if r["partition"] == p] for p in (0, 1)} == expected
    assert not [g for g in groups(dlog_url) if g.startswith("dlog-cli-lookup-")]  # the lookup cleans up


def test_consume_timestamp_one_partition_and_bad_timestamps(dlog, timed):
    got = consume_json(dlog, timed, "-e", "-p", "1", "-o", f"@{T0 + 1}")
    assert [(r["partition"], r["offset"]) for r in got] == [(1, 1)]
    for bad in ("@yesterday", "@2023-13-01", "@-5x", "@"):
        result = dlog("consume", timed, "-e", "-o", bad)
        assert result.exit_code == 2 and "is not a timestamp" in result.output, bad


# ---------------------------------------------------------------------------- consume --group
def test_consume_group_commits_what_it_printed(dlog, filled, group_name):
    first = consume_json(dlog, filled, "--group", group_name, "-e")
    assert sorted((r["partition"], r["offset"]) for r in first) == [(0, i) for i in range(6)] + [(1, i) for i in
                                                                                                  range(4)]
    assert consume_json(dlog, filled, "--group", group_name, "-e") == []  # everything was committed
    described = json.loads(dlog("group", "describe", group_name, "--json").stdout)
    assert described["total_lag"] == 0 and described["members"] == []  # the instance was deleted
    assert sorted((x["partition_id"], x["current_offset"]) for x in described["lags"]) == [(0, 6), (1, 4)]
    dlog("produce", filled, "-p", "1", input="late\n")
    again = consume_json(dlog, filled, "--group", group_name, "-e")
    assert [(r["partition"], r["offset"], r["value"]) for r in again] == [(1, 4, "late")]


def test_consume_group_with_num_commits_only_the_printed_records(dlog, filled, group_name):
    first = consume_json(dlog, filled, "--group", group_name, "-n", "3", "-e")
    assert len(first) == 3
    rest = consume_json(dlog, filled, "--group", group_name, "-e")
    seen = [(r["partition"], r["offset"]) for r in first + rest]
    assert sorted(seen) == [(0, i) for i in range(6)] + [(1, i) for i in range(4)]  # none lost, none twice


def test_consume_group_from_end_and_follow(dlog, dlog_url, filled, group_name):
    import threading

    from tests.cli.test_produce_consume import post_records

    assert consume_json(dlog, filled, "--group", group_name, "-o", "end", "-e") == []
    threading.Timer(0.5, post_records, (dlog_url, filled, ["n1", "n2"], 1)).start()
    got = consume_json(dlog, filled, "--group", group_name, "-n", "2", "--poll-ms", "1000")
    assert [r["value"] for r in got] == ["n1", "n2"]


def test_consume_group_read_committed(dlog, make_topic, topic_name, group_name):
    make_topic(topic_name)
    assert dlog("produce", topic_name, "--transactional-id", f"tx-{topic_name}", "--commit-every", "2",
                input="a\nb\nc\n").exit_code == 0
    got = consume_json(dlog, topic_name, "--group", group_name, "-e", "--isolation", "read_committed")
    assert [r["value"] for r in got] == ["a", "b", "c"]


def test_consume_group_usage_errors(dlog, filled, group_name):
    assert dlog("consume", filled, "--group", group_name, "-p", "0").exit_code == 2
    result = dlog("consume", filled, "--group", group_name, "-o", "5")
    assert result.exit_code == 2 and "dlog group seek" in result.output
    result = dlog("consume", filled + "-none", "--group", group_name, "-e")
    assert result.exit_code == 3 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr


# ---------------------------------------------------------------------------- group commands
def test_group_list_and_describe(dlog, filled, group_name):
    assert dlog("group", "seek", group_name, "--to", "2", "--topic", f"{filled}:0").exit_code == 0
    listed = dlog("group", "list")
    assert listed.exit_code == 0 and "GROUP" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if line.startswith(group_name + " "))
    assert row.split()[1:3] == ["EMPTY", "0"]
    assert group_name in [g["consumer_group_id"] for g in json.loads(dlog("group", "list", "--json").stdout)]
    described = dlog("group", "describe", group_name)
    assert described.exit_code == 0, described.output
    assert "TOTAL-LAG    4" in described.stdout and "CURRENT-OFFSET" in described.stdout
    assert any(line.split()[:5] == [filled, "0", "2", "6", "4"] for line in described.stdout.splitlines())


def test_group_seek(dlog, dlog_url, filled, group_name):
    consume_json(dlog, filled, "--group", group_name, "-e")
    result = dlog("group", "seek", group_name, "--to", "start")
    assert result.exit_code == 0, result.output
    assert "PRIOR-OFFSET" in result.stdout
    assert len(consume_json(dlog, filled, "--group", group_name, "-e")) == 10
    result = dlog("group", "seek", group_name, "--to", "3", "--topic", f"{filled}:0", "--json")
    doc = json.loads(result.stdout)
    assert doc["offsets"] == [{"topic": filled, "partition": 0, "prior_offset": 6, "new_offset": 3}]
    assert [r["offset"] for r in consume_json(dlog, filled, "--group", group_name, "-e")] == [3, 4, 5]
    dry = dlog("group", "seek", group_name, "--to", "end", "--topic", filled, "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.stderr
    assert dlog("group", "seek", group_name, "--to", "99", "--topic", filled, "--json").exit_code == 0  # clamped
    assert consume_json(dlog, filled, "--group", group_name, "-e") == []
    result = dlog("group", "seek", group_name, "--to", "start", "--topic", f"{filled}:1", "--json")
    assert json.loads(result.stdout)["offsets"][0]["new_offset"] == 0


def test_group_seek_by_timestamp_and_a_new_group(dlog, dlog_url, timed, group_name):
    result = dlog("group", "seek", group_name, "--to", f"@{T0 + 4000}", "--topic", timed, "--json")
    assert result.exit_code == 0, result.output
    assert [(o["partition"], o["prior_offset"], o["new_offset"]) for o in json.loads(result.stdout)["offsets"]] == [
        (0, None, 4), (1, None, 1)]
    got = consume_json(dlog, timed, "--group", group_name, "-e")
    assert sorted((r["partition"], r["offset"]) for r in got) == [(0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (0, 9),
                                                                  (1, 1)]
    iso = datetime.fromtimestamp((T0 + 9000) / 1000, timezone.utc).isoformat()
    result = dlog("group", "seek", group_name, "--to", f"@{iso}", "--json")  # the group's topics by default
    assert [o["new_offset"] for o in json.loads(result.stdout)["offsets"]] == [9, 2]


def test_group_seek_errors(dlog, dlog_url, filled, group_name):
    result = dlog("group", "seek", group_name, "--to", "start")
    assert result.exit_code == 2 and "--topic" in result.output  # no offsets, no topics named
    assert dlog("group", "seek", group_name, "--to", "sometime", "--topic", filled).exit_code == 2
    assert dlog("group", "seek", group_name, "--to", "start", "--topic", f"{filled}:x").exit_code == 2
    result = dlog("group", "seek", group_name, "--to", "start", "--topic", f"{filled}:7")
    assert result.exit_code == 3 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr
    # a group with a member cannot be moved
    cid = cluster_id(dlog_url)
    inst = requests.post(f"{dlog_url}/consumers/{group_name}", json={}, timeout=10).json()["instance_id"]
    requests.post(f"{dlog_url}/consumers/{group_name}/instances/{inst}/subscription", json={"topics": [filled]},
                  timeout=10)
    try:
        result = dlog("group", "seek", group_name, "--to", "start", "--topic", filled)
        assert result.exit_code == 2 and "has members" in result.stderr
        result = dlog("group", "delete", group_name)
        assert result.exit_code == 2 and "has members" in result.stderr
        members = requests.get(f"{dlog_url}/v3/clusters/{cid}/consumer-groups/{group_name}/consumers",
                               timeout=10).json()["data"]
        assert len(members) == 1
        described = dlog("group", "describe", group_name)
        assert "MEMBER-ID" in described.stdout and inst in described.stdout
    finally:
        requests.delete(f"{dlog_url}/consumers/{group_name}/instances/{inst}", timeout=10)


def test_group_delete(dlog, filled, group_name):
    consume_json(dlog, filled, "--group", group_name, "-e")
    result = dlog("group", "delete", group_name, group_name + "-none")
    assert result.exit_code == 3
    assert "GROUP_ID_NOT_FOUND" in result.stderr
    rows = dict(line.split() for line in result.stdout.splitlines()[1:])
    assert rows == {group_name: "OK", group_name + "-none": "GROUP_ID_NOT_FOUND"}
    described = dlog("group", "describe", group_name)
    assert described.exit_code == 3 and "GROUP_ID_NOT_FOUND" in described.stderr


def test_consume_group_deletes_its_instance_on_ctrl_c(dlog, dlog_url, filled, group_name, monkeypatch):
    def interrupted(self, records):
        raise KeyboardInterrupt

    monkeypatch.setattr("cli.consume.Printer.write", interrupted)
    result = dlog("consume", filled, "--group", group_name)
    assert result.exit_code == 0, result.output
    cid = cluster_id(dlog_url)
    members = requests.get(f"{dlog_url}/v3/clusters/{cid}/consumer-groups/{group_name}/consumers", timeout=10)
    assert members.json()["data"] == []  # the instance left the group
    offsets = requests.get(f"{dlog_url}/v3/clusters/{cid}/consumer-groups/{group_name}/offsets", timeout=10)
    assert offsets.json()["data"] == []  # nothing printed, nothing committed
