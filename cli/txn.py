"""``dlog txn``: transactional ids and their transactions: list, describe (rpk cluster txn)."""
from __future__ import annotations

from datetime import datetime, timezone

import click

from cli import output
from cli.http import Client, seg, with_client

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _partitions(t: dict) -> str:
    return ",".join(f"{p['topic_name']}-{p['partition_id']}" for p in t.get("partitions") or []) or "-"


@click.group()
def txn() -> None:
    """Transactions: list transactional ids, describe one (state, producer, epoch, partitions).

    Example:

    \b
        dlog txn list
        dlog txn describe loader-1
    """


@txn.command("list")
@JSON_OPTION
@with_client
def list_txns(client: Client, as_json: bool) -> None:
    """List transactional ids with their producer id, epoch, state, timeout and the partitions
    of the open transaction (Ongoing, PrepareCommit, PrepareAbort hold the LSO back).

    Example:

    \b
        dlog txn list
        dlog txn list --json | jq -r '.[] | select(.state == "Ongoing") | .transactional_id'
    """
    data = client.get(client.v3("/transactions"))["data"]
    if as_json:
        output.print_json([output.clean(t) for t in data])
        return
    output.table(["TRANSACTIONAL-ID", "PRODUCER-ID", "EPOCH", "STATE", "TIMEOUT-MS", "STARTED", "PARTITIONS"],
                 [(t["transactional_id"], t.get("producer_id"), t.get("producer_epoch"), t.get("state"),
                   t.get("timeout_ms"), _iso(t.get("start_time_ms")), _partitions(t)) for t in data])


@txn.command("describe")
@click.argument("ids", nargs=-1, required=True, metavar="TRANSACTIONAL_ID...")
@JSON_OPTION
@with_client
def describe(client: Client, ids: tuple[str, ...], as_json: bool) -> None:
    """Describe transactional ids: producer id and epoch, state, timeout, when the open
    transaction started and was last updated, and its partitions.

    Example:

    \b
        dlog txn describe loader-1
        dlog txn describe loader-1 loader-2 --json
    """
    documents = []
    for index, tid in enumerate(ids):
        t = client.get(client.v3(f"/transactions/{seg(tid)}"))
        if as_json:
            documents.append(output.clean(t))
            continue
        if index:
            click.echo()
        output.pairs([("TRANSACTIONAL-ID", t["transactional_id"]), ("PRODUCER-ID", t.get("producer_id")),
                      ("PRODUCER-EPOCH", t.get("producer_epoch")), ("STATE", t.get("state")),
                      ("TIMEOUT-MS", t.get("timeout_ms")), ("STARTED", _iso(t.get("start_time_ms"))),
                      ("LAST-UPDATE", _iso(t.get("last_update_ms")))])
        parts = t.get("partitions") or []
        if parts:
            click.echo()
            output.table(["TOPIC", "PARTITION"], [(p["topic_name"], p["partition_id"]) for p in parts])
    if as_json:
        output.print_json(documents[0] if len(documents) == 1 else documents)


def register(cli: click.Group) -> None:
    cli.add_command(txn)
