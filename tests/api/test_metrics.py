"""GET /metrics: Prometheus text of the partitions' offsets and ISR, under-replicated and
offline partitions, brokers, consumer group lag, and HTTP requests by endpoint and acks."""
from __future__ import annotations

import orjson
from prometheus_client.parser import text_string_to_metric_families

RECORDS = "/v3/clusters/<cid>/topics/<topic_name>/records"


def scrape(client) -> dict[tuple, float]:
    """{(sample name, frozenset of labels): value} of one GET /metrics."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.get_data(as_text=True)) for s in family.samples}


def partition_value(samples: dict, name: str, topic: str, partition: int) -> float | None:
    return samples.get((f"dlog_partition_{name}", frozenset({("topic", topic), ("partition", str(partition))})))


def requests_count(samples: dict, endpoint: str, method: str, status: str, acks: str) -> float:
    labels = frozenset({("endpoint", endpoint), ("method", method), ("status", status), ("acks", acks)})
    return samples.get(("dlog_http_requests_total", labels), 0.0)


def produce_http(client, cluster_id: str, topic: str, values: list, acks: str = "all", partition: int = 0,
                 **fields):
    body = b"\n".join(orjson.dumps({"partition_id": partition, "value": {"type": "JSON", "data": v}, **fields})
                      for v in values)
    return client.post(f"/v3/clusters/{cluster_id}/topics/{topic}/records?acks={acks}", data=body,
                       content_type="application/json")


def test_partition_offsets_isr_and_brokers(client, cluster_id, create_topic):
    create_topic("t", partitions=2, replication_factor=3)
    assert produce_http(client, cluster_id, "t", [1, 2, 3]).status_code == 200
    m = scrape(client)
    assert partition_value(m, "log_end_offset", "t", 0) == 3
    assert partition_value(m, "high_watermark", "t", 0) == 3
    assert partition_value(m, "last_stable_offset", "t", 0) == 3
    assert partition_value(m, "log_start_offset", "t", 0) == 0
    assert partition_value(m, "log_end_offset", "t", 1) == 0
    assert partition_value(m, "replicas", "t", 0) == 3
    assert partition_value(m, "in_sync_replicas", "t", 0) == 3
    assert partition_value(m, "under_replicated", "t", 0) == 0
    assert partition_value(m, "offline", "t", 0) == 0
    assert m[("dlog_under_replicated_partitions", frozenset())] == 0
    assert m[("dlog_offline_partitions", frozenset())] == 0
    assert {m[("dlog_broker_online", frozenset({("broker", str(b))}))] for b in range(3)} == {1.0}


def test_an_open_transaction_holds_the_last_stable_offset(client, cluster_id, create_topic):
    create_topic("t", replication_factor=3)
    producer = client.post(f"/v3/clusters/{cluster_id}/producers", json={"transactional_id": "tx"}).get_json()
    pid, epoch = producer["producer_id"], producer["producer_epoch"]
    assert produce_http(client, cluster_id, "t", [1]).status_code == 200
    txn = {"producer_id": pid, "producer_epoch": epoch, "transactional_id": "tx"}
    for seq, v in enumerate([2, 3]):
        assert produce_http(client, cluster_id, "t", [v], sequence=seq, **txn).status_code == 200
    m = scrape(client)
    assert partition_value(m, "high_watermark", "t", 0) == 3
    assert partition_value(m, "last_stable_offset", "t", 0) == 1  # the transaction began at offset 1
    r = client.post(f"/v3/clusters/{cluster_id}/transactions/tx:commit", json={"producer_id": pid,
                                                                                "producer_epoch": epoch})
    assert r.status_code == 200
    m = scrape(client)
    assert partition_value(m, "last_stable_offset", "t", 0) == 4  # past the COMMIT marker
    assert partition_value(m, "log_end_offset", "t", 0) == 4


def test_under_replicated_and_offline_partitions(client, cluster_id, create_topic, shrink_isr, server):
    create_topic("t", partitions=2, replication_factor=3)
    shrink_isr("t")
    m = scrape(client)
    assert partition_value(m, "in_sync_replicas", "t", 0) == 1
    assert partition_value(m, "under_replicated", "t", 0) == 1
    assert m[("dlog_under_replicated_partitions", frozenset())] == 2
    leader = server.controller.topic("t").partition(0).leader
    led = sum(1 for p in server.controller.topic("t").partitions if p.leader == leader)
    assert client.post(f"/v3/clusters/{cluster_id}/brokers/{leader}:stop").status_code == 200
    m = scrape(client)
    assert m[("dlog_broker_online", frozenset({("broker", str(leader))}))] == 0
    assert partition_value(m, "offline", "t", 0) == 1
    assert partition_value(m, "log_end_offset", "t", 0) is None  # no leader to ask
    assert m[("dlog_offline_partitions", frozenset())] == led


def test_consumer_group_lag_counts_records_past_the_committed_offset(client, cluster_id, create_topic, server):
    create_topic("t", partitions=2)
    assert produce_http(client, cluster_id, "t", list(range(5))).status_code == 200
    server.group_coordinator.reset_offsets("g", [("t", 0, 2, None)])
    m = scrape(client)
    assert m[("dlog_consumer_group_lag", frozenset({("group", "g"), ("topic", "t"), ("partition", "0")}))] == 3


def test_requests_are_counted_by_endpoint_method_status_and_acks(client, cluster_id, create_topic):
    create_topic("t")
    before = scrape(client)
    for acks in ("all", "1", "-1"):
        assert produce_http(client, cluster_id, "t", [1], acks=acks).status_code == 200
    assert produce_http(client, cluster_id, "t", [1], acks="2").status_code == 400
    assert client.get("/no/such/path").status_code == 404
    assert client.open("/health/live", method="BREW").status_code == 405  # an invented method
    after = scrape(client)

    def delta(*labels):
        return requests_count(after, *labels) - requests_count(before, *labels)

    assert delta(RECORDS, "POST", "200", "all") == 2
    assert delta(RECORDS, "POST", "200", "1") == 1
    assert delta(RECORDS, "POST", "400", "invalid") == 1
    assert delta("unmatched", "GET", "404", "") == 1
    assert delta("unmatched", "other", "405", "") == 1
    assert delta("/metrics", "GET", "200", "") == 1  # the first scrape
    count = ("dlog_http_request_duration_seconds_count",
             frozenset({("endpoint", RECORDS), ("method", "POST"), ("status", "200"), ("acks", "all")}))
    assert after[count] - before.get(count, 0) == 2
