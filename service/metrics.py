"""The cluster's state as Prometheus metrics, read from the files at each scrape.

Kafka's broker metrics under dlog names: per partition the log start and end offsets, high
watermark, last stable offset, replica and ISR counts, and whether it is under-replicated or
offline (Kafka's ``UnderReplicatedPartitions`` and ``OfflinePartitionsCount`` as totals too);
per broker whether it is started; per consumer group and partition the lag, counted as the
v3 ``lags`` resource counts it. Nothing is cached: SQLite is the source of truth and every
worker answers a scrape alike. Each partition is one read transaction on its leader's file.
"""
from __future__ import annotations

import logging
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.errors import KafkaError, RestError
from service.groups.lag import group_lags
from service.types import NO_LEADER

logger = logging.getLogger(__name__)

_PARTITION = ["topic", "partition"]


class ClusterCollector(Collector):
    """A prometheus-client collector over a ``DlogServer`` (its controller, replica manager,
    group coordinator and offset manager)."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.server
        image = s.controller.image()
        online = GaugeMetricFamily("dlog_broker_online", "1 while the broker is started, 0 while stopped.",
                                   labels=["broker"])
        for b in image.brokers:
            online.add_metric([str(b.broker_id)], 1 if b.online else 0)
        yield online

        gauges = {name: GaugeMetricFamily(f"dlog_partition_{name}", text, labels=_PARTITION) for name, text in (
            ("log_start_offset", "First offset of the partition's log on its leader."),
            ("log_end_offset", "Offset the leader gives the next record (LEO)."),
            ("high_watermark", "Offset below which every in-sync replica has the records (readable)."),
            ("last_stable_offset", "Offset below which no transaction is open (read_committed reads)."),
            ("replicas", "Replicas assigned to the partition."),
            ("in_sync_replicas", "Replicas in the ISR."),
            ("under_replicated", "1 if the ISR is smaller than the replica set."),
            ("offline", "1 if the partition has no live leader."))}
        under_total = offline_total = 0
        for topic in sorted(image.topics.values(), key=lambda t: t.topic_name):
            for state in topic.partitions:
                labels = [topic.topic_name, str(state.partition_id)]
                offline = state.leader == NO_LEADER or not image.broker(state.leader).online
                under = len(state.isr) < len(state.replicas)
                under_total += under
                offline_total += offline
                gauges["replicas"].add_metric(labels, len(state.replicas))
                gauges["in_sync_replicas"].add_metric(labels, len(state.isr))
                gauges["under_replicated"].add_metric(labels, int(under))
                gauges["offline"].add_metric(labels, int(offline))
                if offline:
                    continue  # no leader to ask (Kafka reports no offsets for it either)
                o = s.replica_manager.offsets(topic, state.partition_id)
                gauges["log_start_offset"].add_metric(labels, o.log_start_offset)
                gauges["log_end_offset"].add_metric(labels, o.log_end_offset)
                gauges["high_watermark"].add_metric(labels, o.high_watermark)
                gauges["last_stable_offset"].add_metric(labels, o.last_stable_offset)
        yield from gauges.values()
        yield GaugeMetricFamily("dlog_under_replicated_partitions", "Partitions whose ISR is smaller than their "
                                "replica set (Kafka's UnderReplicatedPartitions).", value=under_total)
        yield GaugeMetricFamily("dlog_offline_partitions", "Partitions without a live leader (Kafka's "
                                "OfflinePartitionsCount).", value=offline_total)

        lag = GaugeMetricFamily("dlog_consumer_group_lag", "Records a consumer group has yet to read in a partition "
                                "(to the high watermark, or the last stable offset for read_committed groups; "
                                "transaction markers not counted).", labels=["group", *_PARTITION])
        for group_id in s.group_coordinator.list_groups():
            try:
                lags = group_lags(s.group_coordinator, s.offset_manager, s.replica_manager, group_id)
            except (KafkaError, RestError) as exc:  # deleted meanwhile, or a partition without a leader
                logger.debug("no lag for group %s: %s", group_id, exc)
                continue
            for p in lags:
                lag.add_metric([group_id, p.topic_name, str(p.partition_id)], p.lag)
        yield lag
