"""REST Proxy v3 admin resources through the Flask test client: clusters, brokers, topics,
topic configs, partitions (with dlog's visibility fields) and replicas."""
from __future__ import annotations

import pytest

from service.log_config import TOPIC_CONFIGS
from tests.api.helpers import assert_error


def _create(client, v3, name, **body):
    return client.post(f"{v3}/topics", json={"topic_name": name, **body})


# ------------------------------------------------------------------------ clusters, brokers
def test_list_and_get_cluster(client, cluster_id):
    r = client.get("/v3/clusters")
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["kind"] == "KafkaClusterList"
    assert [c["cluster_id"] for c in body["data"]] == [cluster_id]
    r = client.get(f"/v3/clusters/{cluster_id}")
    assert r.status_code == 200
    c = r.get_json()
    assert c["kind"] == "KafkaCluster" and c["cluster_id"] == cluster_id
    assert c["metadata"]["self"].endswith(f"/v3/clusters/{cluster_id}")
    assert c["topics"]["related"].endswith(f"/v3/clusters/{cluster_id}/topics")


def test_unknown_cluster(client):
    assert_error(client.get("/v3/clusters/not-this-cluster"), 404, 404)
    assert_error(client.get("/v3/clusters/not-this-cluster/topics"), 404, 404)


def test_brokers(client, v3, cluster_id):
    r = client.get(f"{v3}/brokers")
    assert r.status_code == 200
    brokers = r.get_json()["data"]
    assert [(b["broker_id"], b["status"], b["cluster_id"]) for b in brokers] == \
        [(0, "online", cluster_id), (1, "online", cluster_id), (2, "online", cluster_id)]
    one = client.get(f"{v3}/brokers/1").get_json()
    assert one["kind"] == "KafkaBroker" and one["broker_id"] == 1 and one["status"] == "online"
    assert_error(client.get(f"{v3}/brokers/99"), 404)


def test_broker_lists_the_replicas_it_holds(client, v3, create_topic):
    t = create_topic("t", partitions=3, replication_factor=2)
    for b in range(3):
        held = client.get(f"{v3}/brokers/{b}").get_json()["replicas"]
        expected = [p.partition_id for p in t.partitions if b in p.replicas]
        assert [(r["topic_name"], r["partition_id"]) for r in held] == [("t", p) for p in expected]
        assert all(r["is_leader"] == (t.partitions[r["partition_id"]].leader == b) for r in held)


# ------------------------------------------------------------------------ topics
def test_create_topic_201_with_location(client, v3, cluster_id):
    r = _create(client, v3, "orders", partitions_count=3, replication_factor=2)
    assert r.status_code == 201
    body = r.get_json()
    assert body["kind"] == "KafkaTopic"
    assert (body["topic_name"], body["partitions_count"], body["replication_factor"], body["cluster_id"]) == \
        ("orders", 3, 2, cluster_id)
    assert body["is_internal"] is False and len(body["topic_id"]) == 22
    assert r.headers["Location"] == body["metadata"]["self"]
    assert r.headers["Location"].endswith(f"/v3/clusters/{cluster_id}/topics/orders")
    got = client.get(f"{v3}/topics/orders").get_json()
    assert got["topic_id"] == body["topic_id"] and got["partitions_count"] == 3


def test_create_topic_defaults(client, v3):
    body = _create(client, v3, "d").get_json()
    assert (body["partitions_count"], body["replication_factor"]) == (1, 3)


def test_create_topic_with_configs(client, v3):
    r = _create(client, v3, "c", partitions_count=1, replication_factor=1,
                configs=[{"name": "retention.ms", "value": "1000"}, {"name": "cleanup.policy", "value": "delete"}])
    assert r.status_code == 201
    got = client.get(f"{v3}/topics/c/configs/retention.ms").get_json()
    assert (got["value"], got["is_default"]) == ("1000", False)


def test_create_topic_validate_only(client, v3):
    r = _create(client, v3, "v", partitions_count=2, validate_only=True)
    assert r.status_code == 200 and r.get_json()["partitions_count"] == 2
    assert_error(client.get(f"{v3}/topics/v"), 404, 40401)


def test_create_duplicate_topic(client, v3):
    assert _create(client, v3, "t", partitions_count=2).status_code == 201
    body = assert_error(_create(client, v3, "t", partitions_count=5), 400, 40002)
    assert body["kafka_error"] == "TOPIC_ALREADY_EXISTS"
    assert client.get(f"{v3}/topics/t").get_json()["partitions_count"] == 2


def test_list_topics_sorted(client, v3):
    for name in ("pears", "apples", "zucchini", "Bananas", "figs"):
        assert _create(client, v3, name, replication_factor=1).status_code == 201
    r = client.get(f"{v3}/topics")
    assert r.status_code == 200
    body = r.get_json()
    assert body["kind"] == "KafkaTopicList"
    assert [t["topic_name"] for t in body["data"]] == ["Bananas", "apples", "figs", "pears", "zucchini"]


def test_patch_partitions_count(client, v3):
    _create(client, v3, "t", partitions_count=2, replication_factor=1)
    r = client.patch(f"{v3}/topics/t", json={"partitions_count": 5})
    assert r.status_code == 200 and r.get_json()["partitions_count"] == 5
    parts = client.get(f"{v3}/topics/t/partitions").get_json()["data"]
    assert [p["partition_id"] for p in parts] == [0, 1, 2, 3, 4]
    body = assert_error(client.patch(f"{v3}/topics/t", json={"partitions_count": 3}), 400, 40002)
    assert body["kafka_error"] == "INVALID_PARTITIONS"
    assert client.get(f"{v3}/topics/t").get_json()["partitions_count"] == 5


def test_delete_topic(client, v3):
    _create(client, v3, "t", replication_factor=1)
    r = client.delete(f"{v3}/topics/t")
    assert r.status_code == 204 and r.get_data() == b""
    assert_error(client.get(f"{v3}/topics/t"), 404, 40401)
    assert_error(client.delete(f"{v3}/topics/t"), 404, 40401)
    assert client.get(f"{v3}/topics").get_json()["data"] == []


# ------------------------------------------------------------------------ topic configs
def test_list_configs_includes_defaults(client, v3):
    _create(client, v3, "t", replication_factor=1, configs=[{"name": "retention.ms", "value": "1000"}])
    r = client.get(f"{v3}/topics/t/configs")
    assert r.status_code == 200
    body = r.get_json()
    assert body["kind"] == "KafkaTopicConfigList"
    by_name = {c["name"]: c for c in body["data"]}
    assert set(by_name) == set(TOPIC_CONFIGS)
    assert (by_name["retention.ms"]["value"], by_name["retention.ms"]["is_default"],
            by_name["retention.ms"]["source"]) == ("1000", False, "DYNAMIC_TOPIC_CONFIG")
    assert (by_name["cleanup.policy"]["value"], by_name["cleanup.policy"]["is_default"],
            by_name["cleanup.policy"]["source"]) == ("delete", True, "DEFAULT_CONFIG")
    assert by_name["max.message.bytes"]["value"] == "1048588"
    assert by_name["min.insync.replicas"]["value"] == "2"
    for c in body["data"]:
        assert c["kind"] == "KafkaTopicConfig" and c["topic_name"] == "t"
        assert c["metadata"]["self"].endswith(f"/topics/t/configs/{c['name']}")


def test_get_put_delete_config(client, v3):
    _create(client, v3, "t", replication_factor=1)
    url = f"{v3}/topics/t/configs/retention.ms"
    got = client.get(url).get_json()
    assert (got["name"], got["value"], got["is_default"]) == ("retention.ms", "604800000", True)
    r = client.put(url, json={"value": "5000"})
    assert r.status_code == 204
    got = client.get(url).get_json()
    assert (got["value"], got["is_default"]) == ("5000", False)
    assert {"name": "retention.ms", "value": "5000", "source": "DYNAMIC_TOPIC_CONFIG"} in got["synonyms"]
    r = client.delete(url)
    assert r.status_code == 204
    got = client.get(url).get_json()
    assert (got["value"], got["is_default"]) == ("604800000", True)


def test_configs_alter_sets_and_deletes_together(client, v3):
    _create(client, v3, "t", replication_factor=1, configs=[{"name": "retention.bytes", "value": "100"}])
    r = client.post(f"{v3}/topics/t/configs:alter", json={"data": [
        {"name": "retention.bytes", "operation": "DELETE"},
        {"name": "retention.ms", "value": "1000"},
        {"name": "max.message.bytes", "value": "2048", "operation": "SET"}]})
    assert r.status_code == 204
    by_name = {c["name"]: c for c in client.get(f"{v3}/topics/t/configs").get_json()["data"]}
    assert (by_name["retention.bytes"]["value"], by_name["retention.bytes"]["is_default"]) == ("-1", True)
    assert by_name["retention.ms"]["value"] == "1000"
    assert by_name["max.message.bytes"]["value"] == "2048"


def test_configs_alter_validate_only(client, v3):
    _create(client, v3, "t", replication_factor=1)
    r = client.post(f"{v3}/topics/t/configs:alter",
                    json={"data": [{"name": "retention.ms", "value": "1000"}], "validate_only": True})
    assert r.status_code == 204
    assert client.get(f"{v3}/topics/t/configs/retention.ms").get_json()["is_default"] is True


def test_config_change_takes_effect_on_produce(client, v3, produce_v3):
    _create(client, v3, "t", replication_factor=1)
    record = {"value": {"type": "STRING", "data": "x" * 50}}
    assert produce_v3("t", record).status_code == 200
    client.put(f"{v3}/topics/t/configs/max.message.bytes", json={"value": "10"})
    assert_error(produce_v3("t", record), 413)
    client.delete(f"{v3}/topics/t/configs/max.message.bytes")
    assert produce_v3("t", record).status_code == 200


# ------------------------------------------------------------------------ partitions, replicas
EXTENSION_FIELDS = {"leader_id", "leader_epoch", "isr", "log_end_offset", "high_watermark",
                    "last_stable_offset", "log_start_offset"}


def test_partitions_with_visibility_fields(client, v3, produce_v3):
    _create(client, v3, "t", partitions_count=3, replication_factor=1)
    for i in range(3):
        produce_v3("t", {"partition_id": 1, "value": {"type": "STRING", "data": str(i)}})
    r = client.get(f"{v3}/topics/t/partitions")
    assert r.status_code == 200
    parts = r.get_json()["data"]
    assert [p["partition_id"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert EXTENSION_FIELDS <= set(p)
        assert p["kind"] == "KafkaPartition" and p["topic_name"] == "t"
        assert p["leader_id"] in p["isr"] and p["leader_epoch"] == 0
        assert p["leader"]["related"].endswith(f"/partitions/{p['partition_id']}/replicas/{p['leader_id']}")
    offsets = [(p["log_start_offset"], p["log_end_offset"], p["high_watermark"], p["last_stable_offset"])
               for p in parts]
    assert offsets == [(0, 0, 0, 0), (0, 3, 3, 3), (0, 0, 0, 0)]
    one = client.get(f"{v3}/topics/t/partitions/1").get_json()
    assert one == parts[1]


def test_partition_offset(client, v3, produce_v3, server, clock):
    _create(client, v3, "t", replication_factor=1, configs=[{"name": "retention.ms", "value": "1000"}])
    url = f"{v3}/topics/t/partitions/0/offset"
    body = client.get(url).get_json()
    assert (body["earliest_offset"], body["latest_offset"]) == (0, 0)
    for i in range(4):
        produce_v3("t", {"value": {"type": "STRING", "data": str(i)}})
    body = client.get(url, query_string={"offset_type": "earliest_and_latest"}).get_json()
    assert body["kind"] == "KafkaPartitionWithOffsets"
    assert (body["earliest_offset"], body["latest_offset"]) == (0, 4)
    clock.advance(2000)
    produce_v3("t", {"value": {"type": "STRING", "data": "new"}})
    server.log_manager.apply_retention()
    body = client.get(url).get_json()
    assert (body["earliest_offset"], body["latest_offset"]) == (4, 5)
    assert_error(client.get(url, query_string={"offset_type": "latest"}), 400)


def test_replicas(client, v3, create_topic, produce_v3):
    t = create_topic("t", partitions=1, replication_factor=3)
    produce_v3("t", {"value": {"type": "STRING", "data": "x"}})
    r = client.get(f"{v3}/topics/t/partitions/0/replicas")
    assert r.status_code == 200
    replicas = r.get_json()["data"]
    state = t.partitions[0]
    assert [x["broker_id"] for x in replicas] == list(state.replicas)
    assert [x["broker_id"] for x in replicas if x["is_leader"]] == [state.leader]
    leader = next(x for x in replicas if x["is_leader"])
    assert leader["log_end_offset"] == 1 and leader["is_in_sync"] is True
    one = client.get(f"{v3}/topics/t/partitions/0/replicas/{state.replicas[1]}").get_json()
    assert one["kind"] == "KafkaReplica" and one["broker_id"] == state.replicas[1] and not one["is_leader"]


def test_replica_of_broker_without_one(client, v3, create_topic):
    t = create_topic("t", partitions=1, replication_factor=1)
    other = next(b for b in (0, 1, 2) if b not in t.partitions[0].replicas)
    assert_error(client.get(f"{v3}/topics/t/partitions/0/replicas/{other}"), 404)


@pytest.mark.parametrize("path", ["partitions/3", "partitions/-1", "partitions/3/offset", "partitions/3/replicas"])
def test_unknown_partition(client, v3, create_topic, path):
    create_topic("t", partitions=3)
    assert_error(client.get(f"{v3}/topics/t/{path}"), 404, 40402)
