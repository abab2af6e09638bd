"""REST Proxy v3 consumer groups (rest-proxy.md 2.8): list, get, consumers, assignments,
lag-summary, lags and the lag of one partition; lag is counted against the last stable
offset for read_committed groups and never counts transaction markers."""
from __future__ import annotations

import pytest

from tests.groups.conftest import error_of


@pytest.fixture
def groups_url(cluster_id) -> str:
    return f"/v3/clusters/{cluster_id}/consumer-groups"


def _ok(resp) -> dict:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    return resp.get_json()


def test_list_and_get_groups(client, consumer, create_topic, groups_url, cluster_id):
    create_topic("t", partitions=2)
    assert _ok(client.get(groups_url))["data"] == []
    a = consumer("orders", "a", client_id="client-a")
    a.subscribe("t")
    consumer("orders", "b").subscribe("t")
    consumer("idle", "x")  # an instance that never subscribed
    listing = _ok(client.get(groups_url))
    assert listing["kind"] == "KafkaConsumerGroupList"
    assert listing["metadata"]["self"] == f"http://localhost{groups_url}"
    assert [g["consumer_group_id"] for g in listing["data"]] == ["idle", "orders"]
    g = _ok(client.get(f"{groups_url}/orders"))
    assert g == listing["data"][1]
    assert g["kind"] == "KafkaConsumerGroup"
    assert g["metadata"] == {"self": f"http://localhost{groups_url}/orders",
                             "resource_name": f"crn:///kafka={cluster_id}/consumer-group=orders"}
    assert (g["cluster_id"], g["state"], g["type"], g["is_simple"], g["generation_id"]) == \
        (cluster_id, "STABLE", "CLASSIC", False, 2)
    assert g["consumers"]["related"] == f"http://localhost{groups_url}/orders/consumers"
    assert g["lag_summary"]["related"] == f"http://localhost{groups_url}/orders/lag-summary"
    assert g["coordinator"]["related"].startswith(f"http://localhost/v3/clusters/{cluster_id}/brokers/")
    assert _ok(client.get(f"{groups_url}/idle"))["state"] == "EMPTY"
    body = error_of(client.get(f"{groups_url}/nope"), 404)
    assert body["error_code"] == 40405
    error_of(client.get("/v3/clusters/not-the-cluster/consumer-groups"), 404)


def test_consumers_and_assignments(client, consumer, create_topic, groups_url, cluster_id):
    create_topic("t", partitions=3)
    a = consumer("orders", "instance-a", client_id="client-a", isolation_level="read_committed")
    b = consumer("orders", "instance-b", client_id="client-b")
    a.subscribe("t")
    b.subscribe("t")
    member_a = a.assignments()["member_id"]
    member_b = b.assignments()["member_id"]
    listing = _ok(client.get(f"{groups_url}/orders/consumers"))
    assert listing["kind"] == "KafkaConsumerList"
    by_id = {c["consumer_id"]: c for c in listing["data"]}
    assert set(by_id) == {member_a, member_b}
    ca = by_id[member_a]
    assert {k: ca[k] for k in ("kind", "cluster_id", "consumer_group_id", "instance_id", "client_id")} == {
        "kind": "KafkaConsumer", "cluster_id": cluster_id, "consumer_group_id": "orders",
        "instance_id": "instance-a", "client_id": "client-a"}
    assert ca["metadata"]["resource_name"] == f"crn:///kafka={cluster_id}/consumer-group=orders/consumer={member_a}"
    assert ca["assignments"]["related"] == f"http://localhost{groups_url}/orders/consumers/{member_a}/assignments"
    assert _ok(client.get(f"{groups_url}/orders/consumers/{member_a}")) == ca

    assignments = _ok(client.get(f"{groups_url}/orders/consumers/{member_a}/assignments"))
    assert assignments["kind"] == "KafkaConsumerAssignmentList"
    parts = [(x["topic_name"], x["partition_id"]) for x in assignments["data"]]
    assert set(parts) == a.assignment() == {("t", 0), ("t", 1)}
    one = _ok(client.get(f"{groups_url}/orders/consumers/{member_a}/assignments/t/partitions/1"))
    assert one["kind"] == "KafkaConsumerAssignment" and one["consumer_id"] == member_a
    assert one["partition"]["related"] == f"http://localhost/v3/clusters/{cluster_id}/topics/t/partitions/1"
    assert one["lag"]["related"] == f"http://localhost{groups_url}/orders/lags/t/partitions/1"
    error_of(client.get(f"{groups_url}/orders/consumers/{member_a}/assignments/t/partitions/2"), 404)
    error_of(client.get(f"{groups_url}/orders/consumers/nobody"), 404)
    error_of(client.get(f"{groups_url}/orders/consumers/nobody/assignments"), 404)
    # After b leaves, a owns everything.
    b.delete()
    data = _ok(client.get(f"{groups_url}/orders/consumers/{member_a}/assignments"))["data"]
    assert {(x["topic_name"], x["partition_id"]) for x in data} == {("t", 0), ("t", 1), ("t", 2)}
    assert [c["consumer_id"] for c in _ok(client.get(f"{groups_url}/orders/consumers"))["data"]] == [member_a]


def test_lag_summary_lags_and_lag_per_partition(client, consumer, create_topic, produce_json, groups_url,
                                                cluster_id):
    create_topic("t", partitions=2)
    produce_json("t", list(range(100)), partition=0)
    produce_json("t", list(range(10)), partition=1)
    a = consumer("orders", "instance-a", client_id="client-a", auto_offset_reset="earliest",
                 auto_commit_enable="false")
    a.subscribe("t")
    a.poll()
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 0},
                             {"topic": "t", "partition": 1, "offset": 9}]})
    member = a.assignments()["member_id"]
    lags = _ok(client.get(f"{groups_url}/orders/lags"))
    assert lags["kind"] == "KafkaConsumerLagList"
    got = {(x["topic_name"], x["partition_id"]): (x["current_offset"], x["log_end_offset"], x["lag"])
           for x in lags["data"]}
    assert got == {("t", 0): (1, 100, 99), ("t", 1): (10, 10, 0)}
    one = _ok(client.get(f"{groups_url}/orders/lags/t/partitions/0"))
    assert {k: one[k] for k in ("kind", "cluster_id", "consumer_group_id", "topic_name", "partition_id",
                                "consumer_id", "instance_id", "client_id", "current_offset", "log_end_offset",
                                "lag")} == {
        "kind": "KafkaConsumerLag", "cluster_id": cluster_id, "consumer_group_id": "orders", "topic_name": "t",
        "partition_id": 0, "consumer_id": member, "instance_id": "instance-a", "client_id": "client-a",
        "current_offset": 1, "log_end_offset": 100, "lag": 99}
    assert one["metadata"]["self"] == f"http://localhost{groups_url}/orders/lags/t/partitions/0"
    summary = _ok(client.get(f"{groups_url}/orders/lag-summary"))
    assert {k: summary[k] for k in ("kind", "cluster_id", "consumer_group_id", "max_lag_consumer_id",
                                    "max_lag_instance_id", "max_lag_client_id", "max_lag_topic_name",
                                    "max_lag_partition_id", "max_lag", "total_lag")} == {
        "kind": "KafkaConsumerGroupLagSummary", "cluster_id": cluster_id, "consumer_group_id": "orders",
        "max_lag_consumer_id": member, "max_lag_instance_id": "instance-a", "max_lag_client_id": "client-a",
        "max_lag_topic_name": "t", "max_lag_partition_id": 0, "max_lag": 99, "total_lag": 99}
    assert summary["max_lag_consumer"]["related"] == f"http://localhost{groups_url}/orders/consumers/{member}"
    assert summary["max_lag_partition"]["related"] == f"http://localhost/v3/clusters/{cluster_id}/topics/t/partitions/0"
    error_of(client.get(f"{groups_url}/orders/lags/t/partitions/7"), 404)
    error_of(client.get(f"{groups_url}/nope/lags"), 404)
    error_of(client.get(f"{groups_url}/nope/lag-summary"), 404)
    # Committing catches up: lag 0. After the instance leaves, the group's offsets still have lag.
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 99}]})
    assert _ok(client.get(f"{groups_url}/orders/lag-summary"))["total_lag"] == 0
    produce_json("t", [1, 2, 3], partition=1)
    a.delete()
    one = _ok(client.get(f"{groups_url}/orders/lags/t/partitions/1"))
    assert (one["lag"], one["consumer_id"], one["instance_id"]) == (3, "", None)
    assert _ok(client.get(f"{groups_url}/orders"))["state"] == "EMPTY"


def test_lag_is_counted_against_the_lso_for_read_committed_and_never_counts_markers(
        client, consumer, create_topic, produce_json, txn_producer, groups_url):
    create_topic("t")
    rc = consumer("rc", "c", auto_offset_reset="earliest", auto_commit_enable="false",
                  isolation_level="read_committed")
    ru = consumer("ru", "c", auto_offset_reset="earliest", auto_commit_enable="false")
    for c in (rc, ru):
        c.subscribe("t")
        c.poll()
        c.commit_ok({"partitions": [{"topic": "t", "partition": 0, "offset": 0}]})

    def lag(group: str) -> tuple[int, int]:
        x = _ok(client.get(f"{groups_url}/{group}/lags/t/partitions/0"))
        return x["log_end_offset"], x["lag"]

    produce_json("t", ["a", "b"])  # offsets 0, 1
    tx = txn_producer("tx-1")
    tx.send("t", 0, "t1", "t2", "t3")  # offsets 2..4, open
    assert lag("rc") == (2, 2)  # the LSO: the open transaction is not yet readable
    assert lag("ru") == (5, 5)  # the HW
    tx.end(commit=True)  # a marker at offset 5
    produce_json("t", ["c"])  # offset 6
    assert lag("rc") == (7, 6)  # 7 offsets, 6 records: the marker is not lag
    assert lag("ru") == (7, 6)
    tx.send("t", 0, "x")  # offset 7
    tx.end(commit=False)  # marker at 8
    assert lag("rc") == (9, 7)  # the aborted record takes an offset (Kafka counts it too), the marker does not
    # A consumer that read everything has no lag, markers or not.
    for c in (rc, ru):
        c.drain()
        c.commit_ok()
    assert lag("rc") == (9, 0) and lag("ru") == (9, 0)
    assert _ok(client.get(f"{groups_url}/rc/lag-summary"))["total_lag"] == 0


def test_delete_group_and_reset_offsets(client, consumer, create_topic, groups_url):
    """dlog's admin extensions: offsets of an empty group can be listed, reset and deleted."""
    create_topic("t")
    a = consumer("orders", "a")
    a.assign(("t", 0))
    a.commit_ok({"offsets": [{"topic": "t", "partition": 0, "offset": 4}]})
    body = _ok(client.get(f"{groups_url}/orders/offsets"))
    assert body["data"] == [{"topic_name": "t", "partition_id": 0, "offset": 5, "metadata": None}]
    reset = {"offsets": [{"topic_name": "t", "partition_id": 0, "offset": 1}]}
    error_of(client.post(f"{groups_url}/orders/offsets", json=reset), 409)  # it has a member
    error_of(client.delete(f"{groups_url}/orders"), 409)
    a.delete()
    assert client.post(f"{groups_url}/orders/offsets", json=reset).status_code == 204
    assert consumer("orders", "b").committed(("t", 0)) == {("t", 0): 1}
    client.delete("/consumers/orders/instances/b")
    assert client.delete(f"{groups_url}/orders").status_code == 204
    error_of(client.get(f"{groups_url}/orders"), 404)
