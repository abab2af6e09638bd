"""``dlog cluster``: the cluster as a whole (``info``, ``health``)."""
from __future__ import annotations

import click

from cli import output
from cli.http import Client, with_client


def controller_id(cluster: dict) -> int | None:
    link = (cluster.get("controller") or {}).get("related") or ""
    tail = link.rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


@click.group()
def cluster() -> None:
    """The cluster as a whole: id, controller, brokers and readiness.

    Example:

    \b
        dlog cluster info
        dlog cluster health
    """


@cluster.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@with_client
def info(client: Client, as_json: bool) -> None:
    """Show the cluster id, the controller, the brokers and the topics (rpk cluster info).

    The controller is marked with * in the broker table.

    Example:

    \b
        dlog cluster info
        dlog cluster info --json | jq -r .cluster_id
    """
    cl = client.get(client.v3())
    brokers = client.get(client.v3("/brokers"))["data"]
    topics = client.get(client.v3("/topics"))["data"]
    ctrl = controller_id(cl)
    if as_json:
        output.print_json({"cluster_id": cl["cluster_id"], "controller_id": ctrl, "url": client.url,
                           "brokers": [output.clean(b) for b in brokers],
                           "topics": [output.clean(t) for t in topics]})
        return
    output.section("CLUSTER")
    output.pairs([("ID", cl["cluster_id"]), ("CONTROLLER", ctrl), ("URL", client.url)])
    click.echo()
    output.section("BROKERS")
    output.table(["ID", "HOST", "PORT", "RACK", "STATUS"],
                 [(f"{b['broker_id']}*" if b["broker_id"] == ctrl else b["broker_id"], b.get("host"), b.get("port"),
                   b.get("rack"), b.get("status")) for b in brokers])
    click.echo()
    output.section("TOPICS")
    output.table(["NAME", "PARTITIONS", "REPLICAS"],
                 [(t["topic_name"], t["partitions_count"], t["replication_factor"]) for t in topics])


@cluster.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the readiness document as JSON.")
@with_client
def health(client: Client, as_json: bool) -> None:
    """Check readiness (GET /health/ready); exit 0 when ready, 4 when still starting.

    Example:

    \b
        dlog cluster health && echo ready
    """
    body = client.get("/health/ready")
    if as_json:
        output.print_json(body)
        return
    brokers = body.get("brokers") or {}
    offline = sorted(b for b, s in brokers.items() if s != "online")
    output.pairs([("STATUS", body.get("status")), ("CLUSTER", body.get("cluster_id")),
                  ("BROKERS", f"{len(brokers) - len(offline)}/{len(brokers)} online"),
                  ("OFFLINE", ",".join(offline) or "none")])


def register(cli: click.Group) -> None:
    cli.add_command(cluster)
