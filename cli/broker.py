"""``dlog broker``: list and describe the simulated brokers; stop and start one (fault injection)."""
from __future__ import annotations

import click

from cli import output
from cli.cluster import controller_id
from cli.http import EXIT_NOT_FOUND, Client, DlogHTTPError, with_client


@click.group()
def broker() -> None:
    """The simulated brokers: list, describe, and stop or start one to inject a fault.

    Example:

    \b
        dlog broker list
        dlog broker stop 1 && dlog broker start 1
    """


@broker.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@with_client
def list_brokers(client: Client, as_json: bool) -> None:
    """List the brokers with their status (online or offline); * marks the controller.

    Example:

    \b
        dlog broker list
        dlog broker list --json | jq '.[] | select(.status == "offline") | .broker_id'
    """
    brokers = client.get(client.v3("/brokers"))["data"]
    if as_json:
        output.print_json([output.clean(b) for b in brokers])
        return
    ctrl = controller_id(client.get(client.v3()))
    output.table(["ID", "HOST", "PORT", "RACK", "STATUS"],
                 [(f"{b['broker_id']}*" if b["broker_id"] == ctrl else b["broker_id"], b.get("host"), b.get("port"),
                   b.get("rack"), b.get("status")) for b in brokers])


@broker.command("describe")
@click.argument("broker_id", type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@with_client
def describe(client: Client, broker_id: int, as_json: bool) -> None:
    """Show one broker, its status and the partition replicas it holds.

    Example:

    \b
        dlog broker describe 0
    """
    b = client.get(client.v3(f"/brokers/{broker_id}"))
    if as_json:
        output.print_json(output.clean(b))
        return
    output.pairs([("ID", b["broker_id"]), ("HOST", b.get("host")), ("PORT", b.get("port")),
                  ("RACK", b.get("rack")), ("STATUS", b.get("status"))])
    replicas = b.get("replicas")
    if replicas is not None:
        click.echo()
        output.table(["TOPIC", "PARTITION", "LEADER", "IN-SYNC"],
                     [(r["topic_name"], r["partition_id"], r.get("is_leader"), r.get("is_in_sync")) for r in replicas])


def _set_status(client: Client, broker_id: int, verb: str, as_json: bool) -> None:
    path = client.v3(f"/brokers/{broker_id}:{verb}")
    try:
        body = client.post(path)
    except DlogHTTPError as exc:
        if exc.status in (404, 405) and not exc.kafka_error and exc.message.startswith("HTTP "):
            raise DlogHTTPError(f"This dlog server has no POST {path} endpoint (broker {verb} is not "
                                "available in this server version).", exc.status,
                                exit_code=EXIT_NOT_FOUND) from None
        raise
    if as_json:
        output.print_json(output.clean(body) if isinstance(body, dict) else
                          {"broker_id": broker_id, "status": "offline" if verb == "stop" else "online"})
        return
    status = body.get("status") if isinstance(body, dict) else None
    click.echo(f"broker {broker_id}: {verb} requested" + (f", now {status}" if status else ""))


@broker.command("stop")
@click.argument("broker_id", type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print the broker's new state as JSON.")
@with_client
def stop(client: Client, broker_id: int, as_json: bool) -> None:
    """Stop one simulated broker: it stops serving and fetching; its file stays.

    Partitions it led elect a new leader from their ISR (POST /v3/clusters/{cid}/brokers/{id}:stop).

    Example:

    \b
        dlog broker stop 1
    """
    _set_status(client, broker_id, "stop", as_json)


@broker.command("start")
@click.argument("broker_id", type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print the broker's new state as JSON.")
@with_client
def start(client: Client, broker_id: int, as_json: bool) -> None:
    """Start a stopped broker: its replicas truncate, catch up and rejoin the ISR.

    Calls POST /v3/clusters/{cid}/brokers/{id}:start.

    Example:

    \b
        dlog broker start 1
    """
    _set_status(client, broker_id, "start", as_json)


def register(cli: click.Group) -> None:
    cli.add_command(broker)
