"""Consumer lag (v3 ``lag-summary``, ``lags``): how many records a group has yet to read.

Lag is counted against the last stable offset for read_committed groups and the high
watermark otherwise, and counts records, never transaction markers (control records take
offsets but are never delivered).
"""
from __future__ import annotations

from dataclasses import dataclass

from service.groups.coordinator import GroupCoordinator
from service.groups.offsets import OffsetMetadataManager
from service.replica_manager import ReplicaManager
from service.types import FetchIsolation


@dataclass(frozen=True)
class PartitionLag:
    topic_name: str
    partition_id: int
    current_offset: int  # committed; the log start when nothing is committed
    log_end_offset: int  # the HW, or the LSO for read_committed groups
    lag: int
    instance_id: str | None
    member_id: str | None
    client_id: str | None


def group_lags(groups: GroupCoordinator, offsets: OffsetMetadataManager, replica_manager: ReplicaManager,
               group_id: str) -> list[PartitionLag]:
    description = groups.describe_group(group_id)
    committed = offsets.fetch_offsets(group_id)
    owners = {tp: i for i, parts in description.assignments.items() for tp in parts}
    members = {m.instance_id: m for m in description.members}
    read_committed = any(m.isolation_level == FetchIsolation.TXN_COMMITTED.value for m in description.members)
    image = replica_manager.controller.image()
    out = []
    for tp in sorted(set(committed) | set(owners)):
        topic = image.topics.get(tp[0])
        if topic is None or not 0 <= tp[1] < topic.partitions_count:
            continue
        o = replica_manager.offsets(topic, tp[1])
        end = o.last_stable_offset if read_committed else o.high_watermark
        current = committed[tp].offset if tp in committed else o.log_start_offset
        lag = replica_manager.count_records(topic, tp[1], current, end)
        owner = owners.get(tp)
        m = members.get(owner) if owner else None
        out.append(PartitionLag(tp[0], tp[1], current, end, lag, owner, m.member_id if m else None,
                                m.client_id if m else None))
    return out
