"""``dlog cluster`` and ``dlog broker``."""
from __future__ import annotations

import json


def test_cluster_info(dlog, dlog_server, dlog_url, make_topic, topic_name):
    make_topic(topic_name, 2)
    result = dlog("cluster", "info")
    assert result.exit_code == 0, result.output
    cid = dlog_server.controller.image().cluster_id
    out = result.stdout
    assert "CLUSTER" in out and "BROKERS" in out and "TOPICS" in out
    assert cid in out and dlog_url in out
    rows = [line.split() for line in out.splitlines()]
    assert ["0*", "127.0.0.1"] == rows[rows.index(["ID", "HOST", "PORT", "RACK", "STATUS"]) + 1][:2]
    assert [topic_name, "2", "1"] in rows


def test_cluster_info_json(dlog, dlog_server, make_topic, topic_name):
    make_topic(topic_name)
    doc = json.loads(dlog("cluster", "info", "--json").stdout)
    assert doc["cluster_id"] == dlog_server.controller.image().cluster_id
    assert doc["controller_id"] == 0
    assert [b["broker_id"] for b in doc["brokers"]] == [0, 1, 2]
    assert all(b["status"] == "online" for b in doc["brokers"])
    assert topic_name in [t["topic_name"] for t in doc["topics"]]


def test_cluster_health(dlog):
    result = dlog("cluster", "health")
    assert result.exit_code == 0
    assert "ready" in result.stdout and "3/3 online" in result.stdout
    doc = json.loads(dlog("cluster", "health", "--json").stdout)
    assert doc["status"] == "ready"


def test_broker_list(dlog):
    result = dlog("broker", "list")
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["ID", "HOST", "PORT", "RACK", "STATUS"]
    assert [r[0] for r in rows[1:]] == ["0*", "1", "2"]
    assert all(r[-1] == "online" for r in rows[1:])
    doc = json.loads(dlog("broker", "list", "--json").stdout)
    assert [b["broker_id"] for b in doc] == [0, 1, 2] and "metadata" not in doc[0]


def test_broker_describe(dlog, make_topic, topic_name):
    make_topic(topic_name, 3)
    result = dlog("broker", "describe", "1")
    assert result.exit_code == 0
    assert "STATUS" in result.stdout and "online" in result.stdout
    doc = json.loads(dlog("broker", "describe", "1", "--json").stdout)
    held = [(r["topic_name"], r["partition_id"]) for r in doc["replicas"]]
    assert len([t for t, _ in held if t == topic_name]) == 1  # RF 1 over 3 brokers: one partition each
    unknown = dlog("broker", "describe", "9")
    assert unknown.exit_code == 3 and "Broker 9" in unknown.stderr


def test_broker_stop_start_against_this_server(dlog):
    """The real server gains POST .../brokers/{id}:stop|:start in another issue: until then the
    CLI says so plainly (exit 3); once it exists, stop and start must round-trip."""
    result = dlog("broker", "stop", "2")
    if result.exit_code == 3:
        assert "no POST" in result.stderr and ":stop" in result.stderr
        return
    assert result.exit_code == 0, result.output
    try:
        assert [b["status"] for b in json.loads(dlog("broker", "list", "--json").stdout)][2] == "offline"
    finally:
        assert dlog("broker", "start", "2").exit_code == 0
    assert [b["status"] for b in json.loads(dlog("broker", "list", "--json").stdout)][2] == "online"


def test_broker_stop_start_contract(stub):
    s, dlog = stub
    base = f"/v3/clusters/{s.CLUSTER}/brokers"
    s.on("POST", f"{base}/1:stop", 200, {"kind": "KafkaBroker", "broker_id": 1, "status": "offline"})
    s.on("POST", f"{base}/1:start", 204, None)
    s.on("POST", f"{base}/7:stop", 404, {"error_code": 404, "message": "Broker 7 cannot be found."})
    result = dlog("broker", "stop", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "broker 1: stop requested, now offline"
    result = dlog("broker", "start", "1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"broker_id": 1, "status": "online"}
    assert ("POST", f"{base}/1:stop", {}) in s.requests and ("POST", f"{base}/1:start", {}) in s.requests
    missing = dlog("broker", "stop", "7")
    assert missing.exit_code == 3 and "Broker 7 cannot be found." in missing.stderr
    absent = dlog("broker", "start", "3")
    assert absent.exit_code == 3 and "no POST" in absent.stderr
