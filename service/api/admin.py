"""REST Proxy v3 admin resources: clusters, brokers, topics, topic configs, partitions, replicas.

Shapes follow Confluent's kafka-rest v3 (``kind``, ``metadata.self``, ``related`` links);
partitions and replicas carry dlog's visibility extensions (leader epoch, ISR, offsets).
"""
from __future__ import annotations

from flask import Blueprint, request

from service.api.http import base_url, body_json, json_response, server
from service.controller import BrokerState, PartitionState, TopicMetadata
from service.errors import PAYLOAD_ERROR, Errors, KafkaError, RestError
from service.log_config import TOPIC_CONFIGS

bp = Blueprint("admin", __name__, url_prefix="/v3")


# ---------------------------------------------------------------------------- serialisers
def _cluster_url(cid: str) -> str:
    return f"{base_url()}/v3/clusters/{cid}"


def _collection(kind: str, self_url: str, data: list) -> dict:
    return {"kind": kind, "metadata": {"self": self_url, "next": None}, "data": data}


def cluster_json(cid: str) -> dict:
    url = _cluster_url(cid)
    return {
        "kind": "KafkaCluster",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}"},
        "cluster_id": cid,
        "controller": {"related": f"{url}/brokers/0"},
        "acls": {"related": f"{url}/acls"},
        "brokers": {"related": f"{url}/brokers"},
        "broker_configs": {"related": f"{url}/broker-configs"},
        "consumer_groups": {"related": f"{url}/consumer-groups"},
        "topics": {"related": f"{url}/topics"},
        "partition_reassignments": {"related": f"{url}/topics/-/partitions/-/reassignment"},
    }


def broker_json(cid: str, b: BrokerState) -> dict:
    url = f"{_cluster_url(cid)}/brokers/{b.broker_id}"
    s = server()
    return {
        "kind": "KafkaBroker",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/broker={b.broker_id}"},
        "cluster_id": cid, "broker_id": b.broker_id, "host": s.config.host, "port": s.config.port, "rack": None,
        "status": b.status,
        "configs": {"related": f"{url}/configs"},
        "partition_replicas": {"related": f"{url}/partition-replicas"},
    }


def topic_json(cid: str, t: TopicMetadata) -> dict:
    url = f"{_cluster_url(cid)}/topics/{t.topic_name}"
    return {
        "kind": "KafkaTopic",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/topic={t.topic_name}"},
        "cluster_id": cid, "topic_name": t.topic_name, "topic_id": t.topic_id, "is_internal": t.is_internal,
        "replication_factor": t.replication_factor, "partitions_count": t.partitions_count,
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
    }


def partition_json(cid: str, t: TopicMetadata, p: PartitionState) -> dict:
    url = f"{_cluster_url(cid)}/topics/{t.topic_name}/partitions/{p.partition_id}"
    rm = server().replica_manager
    offsets = rm.offsets(t, p.partition_id) if p.leader >= 0 else None
    return {
        "kind": "KafkaPartition",
        "metadata": {"self": url,
                     "resource_name": f"crn:///kafka={cid}/topic={t.topic_name}/partition={p.partition_id}"},
        "cluster_id": cid, "topic_name": t.topic_name, "partition_id": p.partition_id,
        "leader": {"related": f"{url}/replicas/{p.leader}"} if p.leader >= 0 else None,
        "replicas": {"related": f"{url}/replicas"},
        "reassignment": {"related": f"{url}/reassignment"},
        # dlog extensions
        "leader_id": p.leader if p.leader >= 0 else None,
        "leader_epoch": p.leader_epoch,
        "partition_epoch": p.partition_epoch,
        "replica_ids": list(p.replicas),
        "isr": list(p.isr),
        "log_start_offset": offsets.log_start_offset if offsets else None,
        "log_end_offset": offsets.log_end_offset if offsets else None,
        "high_watermark": offsets.high_watermark if offsets else None,
        "last_stable_offset": offsets.last_stable_offset if offsets else None,
    }


def replicas_json(cid: str, t: TopicMetadata, p: PartitionState) -> list[dict]:
    url = f"{_cluster_url(cid)}/topics/{t.topic_name}/partitions/{p.partition_id}/replicas"
    per_replica = server().replica_manager.replica_offsets(p)
    return [{
        "kind": "KafkaReplica",
        "metadata": {"self": f"{url}/{b}", "resource_name":
                     f"crn:///kafka={cid}/topic={t.topic_name}/partition={p.partition_id}/replica={b}"},
        "cluster_id": cid, "topic_name": t.topic_name, "partition_id": p.partition_id, "broker_id": b,
        "is_leader": b == p.leader, "is_in_sync": b in p.isr,
        "log_end_offset": per_replica[b].log_end_offset,
        "broker": {"related": f"{_cluster_url(cid)}/brokers/{b}"},
    } for b in p.replicas]


def config_json(cid: str, topic: str, name: str, value: str, is_default: bool) -> dict:
    d = TOPIC_CONFIGS[name]
    source = "DEFAULT_CONFIG" if is_default else "DYNAMIC_TOPIC_CONFIG"
    synonyms = [] if is_default else [{"name": name, "value": value, "source": "DYNAMIC_TOPIC_CONFIG"}]
    default_value = d.default(server().config)
    synonyms.append({"name": d.broker_synonym or name, "value": default_value,
                     "source": "STATIC_BROKER_CONFIG" if d.broker_synonym else "DEFAULT_CONFIG"})
    return {
        "kind": "KafkaTopicConfig",
        "metadata": {"self": f"{_cluster_url(cid)}/topics/{topic}/configs/{name}",
                     "resource_name": f"crn:///kafka={cid}/topic={topic}/config={name}"},
        "cluster_id": cid, "topic_name": topic, "name": name, "value": value, "is_default": is_default,
        "is_read_only": False, "is_sensitive": False, "source": source, "synonyms": synonyms,
    }


# ---------------------------------------------------------------------------- helpers
def _cluster(cid: str) -> str:
    actual = server().controller.image().cluster_id
    if cid != actual:
        raise RestError(404, f"Cluster {cid} cannot be found.", 404)
    return cid


def _topic(cid: str, name: str) -> TopicMetadata:
    _cluster(cid)
    return server().controller.topic(name)


def _object_body() -> dict:
    body = body_json()
    if not isinstance(body, dict):
        raise RestError(422, "Payload error. The body must be a JSON object.", PAYLOAD_ERROR)
    return body


# ---------------------------------------------------------------------------- clusters, brokers
@bp.get("/clusters")
def list_clusters():
    """List the cluster (there is exactly one)."""
    cid = server().controller.image().cluster_id
    return json_response(_collection("KafkaClusterList", f"{base_url()}/v3/clusters", [cluster_json(cid)]))


@bp.get("/clusters/<cid>")
def get_cluster(cid: str):
    """Get the cluster."""
    return json_response(cluster_json(_cluster(cid)))


@bp.get("/clusters/<cid>/brokers")
def list_brokers(cid: str):
    """List the brokers with their status (online or offline)."""
    _cluster(cid)
    image = server().controller.image()
    return json_response(_collection("KafkaBrokerList", f"{_cluster_url(cid)}/brokers",
                                     [broker_json(cid, b) for b in image.brokers]))


@bp.get("/clusters/<cid>/brokers/<int:broker_id>")
def get_broker(cid: str, broker_id: int):
    """Get one broker, its status and the partition replicas it holds."""
    _cluster(cid)
    image = server().controller.image()
    b = image.broker(broker_id)
    body = broker_json(cid, b)
    body["replicas"] = [{"topic_name": t.topic_name, "partition_id": p.partition_id,
                         "is_leader": p.leader == broker_id, "is_in_sync": broker_id in p.isr}
                        for t in sorted(image.topics.values(), key=lambda t: t.topic_name)
                        for p in t.partitions if broker_id in p.replicas]
    return json_response(body)


@bp.post("/clusters/<cid>/brokers/<int:broker_id>:stop")
def stop_broker(cid: str, broker_id: int):
    """Stop a broker (simulated failure): it stops serving and fetching, the partitions it led
    get new leaders from their ISR, and its replicas leave the ISR after replica.lag.time.max.ms.
    Its file stays, like a real broker's disk."""
    _cluster(cid)
    return json_response(broker_json(cid, server().controller.stop_broker(broker_id)))


@bp.post("/clusters/<cid>/brokers/<int:broker_id>:start")
def start_broker(cid: str, broker_id: int):
    """Start a stopped broker: it truncates each replica where it diverges from the leader,
    catches up and rejoins the ISR; partitions left without a leader may elect it."""
    _cluster(cid)
    return json_response(broker_json(cid, server().controller.start_broker(broker_id)))


# ---------------------------------------------------------------------------- topics
@bp.get("/clusters/<cid>/topics")
def list_topics(cid: str):
    """List topics, sorted by name."""
    _cluster(cid)
    topics = server().controller.image().topics
    return json_response(_collection("KafkaTopicList", f"{_cluster_url(cid)}/topics",
                                     [topic_json(cid, topics[n]) for n in sorted(topics)]))


@bp.post("/clusters/<cid>/topics")
def create_topic(cid: str):
    """Create a topic: ``topic_name``, optional ``partitions_count``, ``replication_factor``,
    ``replicas_assignments``, ``configs`` and ``validate_only``. 201 with a Location header."""
    _cluster(cid)
    body = _object_body()
    unknown = set(body) - {"topic_name", "partitions_count", "replication_factor", "replicas_assignments",
                           "configs", "validate_only"}
    if unknown:
        raise RestError(422, f"Payload error. Unrecognized field(s): {', '.join(sorted(unknown))}.", PAYLOAD_ERROR)
    if "topic_name" not in body:
        raise RestError(422, "Payload error. topic_name is required.", PAYLOAD_ERROR)
    configs = body.get("configs") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) and "name" in c for c in configs):
        raise RestError(422, "Payload error. configs must be a list of {\"name\", \"value\"} objects.", PAYLOAD_ERROR)
    assignments = body.get("replicas_assignments")
    if assignments is not None and not isinstance(assignments, dict):
        raise RestError(422, "Payload error. replicas_assignments must be an object.", PAYLOAD_ERROR)
    validate_only = body.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise RestError(422, "Payload error. validate_only must be a boolean.", PAYLOAD_ERROR)
    if not isinstance(body["topic_name"], str):
        raise KafkaError(Errors.INVALID_TOPIC_EXCEPTION, "Payload error. Invalid topic name.", 42206)
    topic = server().controller.create_topic(
        body["topic_name"], body.get("partitions_count"), body.get("replication_factor"),
        [(c["name"], c.get("value")) for c in configs], validate_only, assignments)
    data = topic_json(cid, topic)
    if validate_only:
        return json_response(data, 200)
    return json_response(data, 201, headers={"Location": data["metadata"]["self"]})


@bp.get("/clusters/<cid>/topics/<topic>")
def get_topic(cid: str, topic: str):
    """Get a topic."""
    return json_response(topic_json(cid, _topic(cid, topic)))


@bp.patch("/clusters/<cid>/topics/<topic>")
def update_topic(cid: str, topic: str):
    """Increase a topic's ``partitions_count``."""
    _topic(cid, topic)
    body = _object_body()
    if set(body) != {"partitions_count"}:
        raise RestError(422, "Payload error. The body must be {\"partitions_count\": N}.", PAYLOAD_ERROR)
    return json_response(topic_json(cid, server().controller.create_partitions(topic, body["partitions_count"])))


@bp.delete("/clusters/<cid>/topics/<topic>")
def delete_topic(cid: str, topic: str):
    """Delete a topic and, shortly after, its logs on every broker. 204."""
    _topic(cid, topic)
    server().controller.delete_topic(topic)
    return "", 204


# ---------------------------------------------------------------------------- topic configs
@bp.get("/clusters/<cid>/topics/<topic>/configs")
def list_topic_configs(cid: str, topic: str):
    """Every config of a topic, defaults included (``is_default``)."""
    _topic(cid, topic)
    configs = server().controller.describe_configs(topic)
    return json_response(_collection("KafkaTopicConfigList", f"{_cluster_url(cid)}/topics/{topic}/configs",
                                     [config_json(cid, topic, n, v, d) for n, (v, d) in configs.items()]))


@bp.get("/clusters/<cid>/topics/-/configs")
def list_all_topic_configs(cid: str):
    """The configs of every topic."""
    _cluster(cid)
    c = server().controller
    data = [config_json(cid, t, n, v, d) for t in sorted(c.image().topics)
            for n, (v, d) in c.describe_configs(t).items()]
    return json_response(_collection("KafkaTopicConfigList", f"{_cluster_url(cid)}/topics/-/configs", data))


@bp.get("/clusters/<cid>/topics/<topic>/configs/<name>")
def get_topic_config(cid: str, topic: str, name: str):
    """One config of a topic."""
    _topic(cid, topic)
    if name not in TOPIC_CONFIGS:
        raise RestError(404, f"Config {name} cannot be found for topic {topic}.", 404)
    value, is_default = server().controller.describe_configs(topic)[name]
    return json_response(config_json(cid, topic, name, value, is_default))


@bp.put("/clusters/<cid>/topics/<topic>/configs/<name>")
def put_topic_config(cid: str, topic: str, name: str):
    """Set one config: ``{"value": "..."}``. 204."""
    _topic(cid, topic)
    body = _object_body()
    if body.get("value") is None:
        raise RestError(422, "Payload error. value is required (DELETE the config to reset it).", PAYLOAD_ERROR)
    server().controller.alter_configs(topic, [(name, body["value"])])
    return "", 204


@bp.delete("/clusters/<cid>/topics/<topic>/configs/<name>")
def reset_topic_config(cid: str, topic: str, name: str):
    """Reset one config to its default. 204."""
    _topic(cid, topic)
    if name not in TOPIC_CONFIGS:
        raise RestError(404, f"Config {name} cannot be found for topic {topic}.", 404)
    server().controller.alter_configs(topic, [(name, None)])
    return "", 204


@bp.post("/clusters/<cid>/topics/<topic>/configs:alter")
def alter_topic_configs(cid: str, topic: str):
    """Set or delete several configs at once: ``{"data": [{"name", "value", "operation"}], "validate_only"}``."""
    _topic(cid, topic)
    body = _object_body()
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) and "name" in d for d in data):
        raise RestError(422, "Payload error. data must be a list of {\"name\", \"value\", \"operation\"}.",
                        PAYLOAD_ERROR)
    changes = []
    for d in data:
        op = str(d.get("operation", "SET")).upper()
        if op not in ("SET", "DELETE"):
            raise RestError(422, f"Payload error. Unknown operation {d.get('operation')!r}.", PAYLOAD_ERROR)
        if op == "SET" and d.get("value") is None:
            raise RestError(422, f"Payload error. SET of {d['name']} needs a value.", PAYLOAD_ERROR)
        changes.append((d["name"], None if op == "DELETE" else d.get("value")))
    validate_only = body.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise RestError(422, "Payload error. validate_only must be a boolean.", PAYLOAD_ERROR)
    server().controller.alter_configs(topic, changes, validate_only=validate_only)
    return "", 204


# ---------------------------------------------------------------------------- partitions
@bp.get("/clusters/<cid>/topics/<topic>/partitions")
def list_partitions(cid: str, topic: str):
    """A topic's partitions with leader, leader epoch, ISR and offsets."""
    t = _topic(cid, topic)
    return json_response(_collection("KafkaPartitionList", f"{_cluster_url(cid)}/topics/{topic}/partitions",
                                     [partition_json(cid, t, p) for p in t.partitions]))


@bp.get("/clusters/<cid>/topics/<topic>/partitions/<int(signed=True):partition_id>")
def get_partition(cid: str, topic: str, partition_id: int):
    """One partition with leader, leader epoch, ISR and offsets."""
    t = _topic(cid, topic)
    return json_response(partition_json(cid, t, t.partition(partition_id)))


@bp.get("/clusters/<cid>/topics/<topic>/partitions/<int(signed=True):partition_id>/offset")
def get_partition_offsets(cid: str, topic: str, partition_id: int):
    """Earliest and latest offsets (``?offset_type=earliest_and_latest``), plus dlog's fields."""
    t = _topic(cid, topic)
    offset_type = request.args.get("offset_type", "earliest_and_latest")
    if offset_type != "earliest_and_latest":
        raise RestError(400, f"offset_type must be earliest_and_latest, not {offset_type!r}.", 400)
    p = t.partition(partition_id)
    o = server().replica_manager.offsets(t, p.partition_id)
    url = f"{_cluster_url(cid)}/topics/{topic}/partitions/{partition_id}/offset"
    return json_response({
        "kind": "KafkaPartitionWithOffsets",
        "metadata": {"self": url,
                     "resource_name": f"crn:///kafka={cid}/topic={topic}/partition={partition_id}/offset"},
        "cluster_id": cid, "topic_name": topic, "partition_id": partition_id,
        "earliest_offset": o.log_start_offset, "latest_offset": o.high_watermark,
        "log_start_offset": o.log_start_offset, "high_watermark": o.high_watermark,
        "last_stable_offset": o.last_stable_offset, "log_end_offset": o.log_end_offset,
    })


@bp.get("/clusters/<cid>/topics/<topic>/partitions/<int(signed=True):partition_id>/replicas")
def list_replicas(cid: str, topic: str, partition_id: int):
    """A partition's replicas, each with its log end offset and whether it is in sync."""
    t = _topic(cid, topic)
    p = t.partition(partition_id)
    return json_response(_collection(
        "KafkaReplicaList", f"{_cluster_url(cid)}/topics/{topic}/partitions/{partition_id}/replicas",
        replicas_json(cid, t, p)))


@bp.get("/clusters/<cid>/topics/<topic>/partitions/<int(signed=True):partition_id>/replicas/<int:broker_id>")
def get_replica(cid: str, topic: str, partition_id: int, broker_id: int):
    """One replica of a partition."""
    t = _topic(cid, topic)
    p = t.partition(partition_id)
    for r in replicas_json(cid, t, p):
        if r["broker_id"] == broker_id:
            return json_response(r)
    raise KafkaError(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"Broker {broker_id} holds no replica of "
                     f"{topic}-{partition_id}.", 404)
