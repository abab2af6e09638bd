"""``dlog topic``: create, list, describe, alter-config, add-partitions, delete."""
from __future__ import annotations

import json


def configs_of(dlog, topic: str) -> dict[str, dict]:
    result = dlog("topic", "describe", topic, "--json")
    assert result.exit_code == 0, result.output
    return {c["name"]: c for c in json.loads(result.stdout)["configs"]}


def test_create_with_partitions_replicas_and_configs(dlog, topic_name):
    result = dlog("topic", "create", topic_name, "-p", "3", "-r", "2", "-c", "retention.ms=60000",
                  "--topic-config", "cleanup.policy=delete")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["TOPIC", "STATUS", topic_name, "OK"]
    doc = json.loads(dlog("topic", "describe", topic_name, "--json").stdout)
    assert doc["topic"]["partitions_count"] == 3
    assert doc["topic"]["replication_factor"] == 2
    assert "metadata" not in doc["topic"] and "partitions" not in doc["topic"]  # links are dropped
    configs = {c["name"]: c for c in doc["configs"]}
    assert configs["retention.ms"]["value"] == "60000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert len(doc["partitions"]) == 3
    assert {len(p["replica_ids"]) for p in doc["partitions"]} == {2}


def test_create_several_and_json(dlog, topic_name):
    result = dlog("topic", "create", topic_name + "-a", topic_name + "-b", "-p", "1", "-r", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [d["topic"] for d in doc] == [topic_name + "-a", topic_name + "-b"]
    assert all(d["ok"] and d["partitions"] == 1 and d["replicas"] == 1 for d in doc)


def test_create_existing_topic_fails_with_kafka_error(dlog, make_topic, topic_name):
    make_topic(topic_name)
    result = dlog("topic", "create", topic_name, topic_name + "-new", "-r", "1")
    assert result.exit_code == 2
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [["TOPIC", "STATUS"], [topic_name, "TOPIC_ALREADY_EXISTS"], [topic_name + "-new", "OK"]]
    assert "already exists" in result.stderr and "TOPIC_ALREADY_EXISTS" in result.stderr


def test_create_rejects_bad_input(dlog, topic_name):
    result = dlog("topic", "create", "bad name")
    assert result.exit_code == 2 and "INVALID_TOPIC_EXCEPTION" in result.stderr
    result = dlog("topic", "create", topic_name, "-r", "7")
    assert result.exit_code == 2 and "INVALID_REPLICATION_FACTOR" in result.stderr
    result = dlog("topic", "create", topic_name, "-c", "retention.ms")
    assert result.exit_code == 2 and "is not name=value" in result.output
    result = dlog("topic", "create", topic_name, "-c", "retention.ms=soon")
    assert result.exit_code == 2 and "INVALID_CONFIG" in result.stderr


def test_create_dry_run_creates_nothing(dlog, topic_name):
    result = dlog("topic", "create", topic_name, "-r", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert dlog("topic", "describe", topic_name).exit_code == 3


def test_list_table_json_and_filter(dlog, make_topic, topic_name):
    make_topic(topic_name + "-x", 2)
    make_topic(topic_name + "-y", 1)
    result = dlog("topic", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PARTITIONS", "REPLICAS"]
    assert [topic_name + "-x", "2", "1"] in [line.split() for line in lines]
    result = dlog("topic", "list", f"^{topic_name}-y$", "--json")
    doc = json.loads(result.stdout)
    assert [t["topic_name"] for t in doc] == [topic_name + "-y"]
    assert doc[0]["partitions_count"] == 1 and "topic_id" in doc[0]
    assert dlog("topic", "list", "(").exit_code == 2


def test_describe_sections(dlog, make_topic, topic_name):
    make_topic(topic_name, 2)
    result = dlog("topic", "describe", topic_name)
    assert result.exit_code == 0
    for title in ("SUMMARY", "CONFIGS", "PARTITIONS", "HIGH-WATERMARK", "retention.ms", "DEFAULT_CONFIG"):
        assert title in result.stdout
    only_partitions = dlog("topic", "describe", topic_name, "-p").stdout
    assert "PARTITIONS" in only_partitions and "SUMMARY" not in only_partitions and "CONFIGS" not in only_partitions
    rows = [line.split() for line in only_partitions.splitlines()[3:]]
    assert [r[0] for r in rows] == ["0", "1"]
    assert all(r[5:8] == ["0", "0", "0"] for r in rows)  # log start, high watermark, log end
    only_summary = dlog("topic", "describe", topic_name, "-s").stdout
    assert "SUMMARY" in only_summary and "CONFIGS" not in only_summary


def test_describe_unknown_topic_exits_3(dlog, topic_name):
    result = dlog("topic", "describe", topic_name)
    assert result.exit_code == 3
    assert "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr and topic_name in result.stderr


def test_alter_config_set_and_delete(dlog, make_topic, topic_name):
    make_topic(topic_name, 1, 1, "retention.ms=1000")
    result = dlog("topic", "alter-config", topic_name, "--set", "retention.bytes=4096", "--set",
                  "min.insync.replicas=1", "--delete", "retention.ms")
    assert result.exit_code == 0, result.output
    configs = configs_of(dlog, topic_name)
    assert configs["retention.bytes"]["value"] == "4096" and not configs["retention.bytes"]["is_default"]
    assert configs["min.insync.replicas"]["value"] == "1"
    assert configs["retention.ms"]["is_default"]


def test_alter_config_errors(dlog, make_topic, topic_name):
    make_topic(topic_name)
    assert dlog("topic", "alter-config", topic_name).exit_code == 2  # nothing to change
    result = dlog("topic", "alter-config", topic_name, "--set", "no.such.config=1")
    assert result.exit_code == 2 and "INVALID_CONFIG" in result.stderr
    result = dlog("topic", "alter-config", topic_name, "--set", "retention.bytes=1", "--dry-run")
    assert result.exit_code == 0
    assert configs_of(dlog, topic_name)["retention.bytes"]["is_default"]  # dry run changed nothing
    assert dlog("topic", "alter-config", topic_name + "-none", "--set", "retention.ms=1").exit_code == 3


def test_add_partitions(dlog, make_topic, topic_name):
    make_topic(topic_name, 2)
    result = dlog("topic", "add-partitions", topic_name, "-n", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"topic": topic_name, "ok": True, "partitions": 5}]
    assert json.loads(dlog("topic", "describe", topic_name, "--json").stdout)["topic"]["partitions_count"] == 5
    assert dlog("topic", "add-partitions", topic_name).exit_code == 2  # -n is required
    assert dlog("topic", "add-partitions", topic_name + "-none", "-n", "1").exit_code == 3


def test_delete(dlog, make_topic, topic_name):
    make_topic(topic_name)
    result = dlog("topic", "delete", topic_name)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["TOPIC", "STATUS", topic_name, "OK"]
    assert topic_name not in dlog("topic", "list").stdout
    result = dlog("topic", "delete", topic_name)
    assert result.exit_code == 3
    assert "UNKNOWN_TOPIC_OR_PARTITION" in result.stdout + result.stderr
