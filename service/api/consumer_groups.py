"""REST Proxy v3 consumer groups: list, get, consumers, assignments, lag-summary, lags; plus
dlog's admin extensions: committed offsets (list and reset) and delete."""
from __future__ import annotations

from flask import Blueprint

from service.api.admin import _cluster, _collection, _cluster_url
from service.api.http import body_json, json_response, server, topic_partition_offsets
from service.errors import Errors, KafkaError, RestError
from service.groups.coordinator import GroupDescription, Member
from service.groups.lag import PartitionLag, group_lags

bp = Blueprint("consumer_groups", __name__, url_prefix="/v3")


def _group_url(cid: str, group_id: str) -> str:
    return f"{_cluster_url(cid)}/consumer-groups/{group_id}"


def group_json(cid: str, g: GroupDescription) -> dict:
    url = _group_url(cid, g.group_id)
    return {
        "kind": "KafkaConsumerGroup",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/consumer-group={g.group_id}"},
        "cluster_id": cid, "consumer_group_id": g.group_id, "is_simple": not g.members,
        "partition_assignor": "range", "state": g.state.rest_name, "type": "CLASSIC",
        "is_mixed_consumer_group": False, "generation_id": g.generation_id,
        "coordinator": {"related": f"{_cluster_url(cid)}/brokers/0"},
        "consumers": {"related": f"{url}/consumers"},
        "lag_summary": {"related": f"{url}/lag-summary"},
    }


def consumer_json(cid: str, group_id: str, m: Member) -> dict:
    url = f"{_group_url(cid, group_id)}/consumers/{m.member_id}"
    return {
        "kind": "KafkaConsumer",
        "metadata": {"self": url, "resource_name":
                     f"crn:///kafka={cid}/consumer-group={group_id}/consumer={m.member_id}"},
        "cluster_id": cid, "consumer_group_id": group_id, "consumer_id": m.member_id,
        "instance_id": m.instance_id, "client_id": m.client_id, "isolation_level": m.isolation_level,
        "assignments": {"related": f"{url}/assignments"},
    }


def assignment_json(cid: str, group_id: str, member_id: str, topic: str, partition: int) -> dict:
    url = f"{_group_url(cid, group_id)}/consumers/{member_id}/assignments/{topic}/partitions/{partition}"
    return {
        "kind": "KafkaConsumerAssignment",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/consumer-group={group_id}/consumer="
                                                   f"{member_id}/assignment={topic}/partition={partition}"},
        "cluster_id": cid, "consumer_group_id": group_id, "consumer_id": member_id, "topic_name": topic,
        "partition_id": partition,
        "partition": {"related": f"{_cluster_url(cid)}/topics/{topic}/partitions/{partition}"},
        "lag": {"related": f"{_group_url(cid, group_id)}/lags/{topic}/partitions/{partition}"},
    }


def lag_json(cid: str, group_id: str, lag: PartitionLag) -> dict:
    url = f"{_group_url(cid, group_id)}/lags/{lag.topic_name}/partitions/{lag.partition_id}"
    return {
        "kind": "KafkaConsumerLag",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/consumer-group={group_id}/lag="
                                                   f"{lag.topic_name}/partition={lag.partition_id}"},
        "cluster_id": cid, "consumer_group_id": group_id, "topic_name": lag.topic_name,
        "partition_id": lag.partition_id, "consumer_id": lag.member_id or "", "instance_id": lag.instance_id,
        "client_id": lag.client_id or "", "current_offset": lag.current_offset,
        "log_end_offset": lag.log_end_offset, "lag": lag.lag,
    }


def _describe(cid: str, group_id: str) -> GroupDescription:
    _cluster(cid)
    return server().group_coordinator.describe_group(group_id)


def _member(g: GroupDescription, consumer_id: str) -> Member:
    for m in g.members:
        if m.member_id == consumer_id:
            return m
    raise KafkaError(Errors.UNKNOWN_MEMBER_ID, f"Consumer {consumer_id} is not in group {g.group_id}.", 404)


@bp.get("/clusters/<cid>/consumer-groups")
def list_groups(cid: str):
    """Consumer groups with members or committed offsets."""
    _cluster(cid)
    groups = server().group_coordinator
    return json_response(_collection("KafkaConsumerGroupList", f"{_cluster_url(cid)}/consumer-groups",
                                     [group_json(cid, groups.describe_group(g)) for g in groups.list_groups()]))


@bp.get("/clusters/<cid>/consumer-groups/<group_id>")
def get_group(cid: str, group_id: str):
    """One group: state, generation, coordinator."""
    return json_response(group_json(cid, _describe(cid, group_id)))


@bp.delete("/clusters/<cid>/consumer-groups/<group_id>")
def delete_group(cid: str, group_id: str):
    """Delete a group without members, with its committed offsets. 204."""
    _cluster(cid)
    server().group_coordinator.delete_group(group_id)
    return "", 204


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/consumers")
def list_consumers(cid: str, group_id: str):
    """The group's members (REST consumer instances)."""
    g = _describe(cid, group_id)
    return json_response(_collection("KafkaConsumerList", f"{_group_url(cid, group_id)}/consumers",
                                     [consumer_json(cid, group_id, m) for m in g.members]))


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/consumers/<consumer_id>")
def get_consumer(cid: str, group_id: str, consumer_id: str):
    """One member."""
    g = _describe(cid, group_id)
    return json_response(consumer_json(cid, group_id, _member(g, consumer_id)))


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/consumers/<consumer_id>/assignments")
def list_assignments(cid: str, group_id: str, consumer_id: str):
    """The partitions a member owns."""
    g = _describe(cid, group_id)
    m = _member(g, consumer_id)
    data = [assignment_json(cid, group_id, consumer_id, t, p) for t, p in g.assignments.get(m.instance_id, [])]
    return json_response(_collection("KafkaConsumerAssignmentList",
                                     f"{_group_url(cid, group_id)}/consumers/{consumer_id}/assignments", data))


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/consumers/<consumer_id>/assignments/<topic>/partitions/"
        "<int(signed=True):partition_id>")
def get_assignment(cid: str, group_id: str, consumer_id: str, topic: str, partition_id: int):
    """One partition a member owns."""
    g = _describe(cid, group_id)
    m = _member(g, consumer_id)
    if (topic, partition_id) not in g.assignments.get(m.instance_id, []):
        raise RestError(404, f"Consumer {consumer_id} does not own {topic}-{partition_id}.", 404)
    return json_response(assignment_json(cid, group_id, consumer_id, topic, partition_id))


def _lags(cid: str, group_id: str) -> list[PartitionLag]:
    _describe(cid, group_id)
    s = server()
    return group_lags(s.group_coordinator, s.offset_manager, s.replica_manager, group_id)


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/lag-summary")
def lag_summary(cid: str, group_id: str):
    """Total and largest lag of the group (records, never transaction markers)."""
    lags = _lags(cid, group_id)
    top = max(lags, key=lambda lag: lag.lag, default=None)
    url = _group_url(cid, group_id)
    return json_response({
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": {"self": f"{url}/lag-summary",
                     "resource_name": f"crn:///kafka={cid}/consumer-groups={group_id}/lag-summary"},
        "cluster_id": cid, "consumer_group_id": group_id,
        "max_lag_consumer_id": (top.member_id or "") if top else "",
        "max_lag_instance_id": top.instance_id if top else None,
        "max_lag_client_id": (top.client_id or "") if top else "",
        "max_lag_topic_name": top.topic_name if top else "",
        "max_lag_partition_id": top.partition_id if top else 0,
        "max_lag": top.lag if top else 0,
        "total_lag": sum(lag.lag for lag in lags),
        "max_lag_consumer": {"related": f"{url}/consumers/{top.member_id}"} if top and top.member_id else None,
        "max_lag_partition": {"related": f"{_cluster_url(cid)}/topics/{top.topic_name}/partitions/"
                                         f"{top.partition_id}"} if top else None,
    })


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/lags")
def list_lags(cid: str, group_id: str):
    """Lag per partition the group owns or has committed."""
    return json_response(_collection("KafkaConsumerLagList", f"{_group_url(cid, group_id)}/lags",
                                     [lag_json(cid, group_id, lag) for lag in _lags(cid, group_id)]))


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/lags/<topic>/partitions/<int(signed=True):partition_id>")
def get_lag(cid: str, group_id: str, topic: str, partition_id: int):
    """Lag of one partition."""
    for lag in _lags(cid, group_id):
        if (lag.topic_name, lag.partition_id) == (topic, partition_id):
            return json_response(lag_json(cid, group_id, lag))
    raise RestError(404, f"Group {group_id} has no lag for {topic}-{partition_id}.", 404)


@bp.get("/clusters/<cid>/consumer-groups/<group_id>/offsets")
def list_offsets(cid: str, group_id: str):
    """The group's committed offsets (next offsets to read)."""
    _describe(cid, group_id)
    committed = server().offset_manager.fetch_offsets(group_id)
    return json_response({"consumer_group_id": group_id, "data": [
        {"topic_name": t, "partition_id": p, "offset": o.offset, "metadata": o.metadata}
        for (t, p), o in sorted(committed.items())]})


@bp.post("/clusters/<cid>/consumer-groups/<group_id>/offsets")
def reset_offsets(cid: str, group_id: str):
    """Set committed offsets of a group with no members (as ``kafka-consumer-groups
    --reset-offsets``): ``{"offsets": [{"topic_name", "partition_id", "offset"}]}``. 204."""
    _cluster(cid)
    body = body_json()
    offsets = topic_partition_offsets(body.get("offsets") if isinstance(body, dict) else None, 422)
    server().group_coordinator.reset_offsets(group_id, offsets)
    return "", 204
