"""``dlog topic``: create, list, describe, alter-config, add-partitions, delete (rpk's verbs)."""
from __future__ import annotations

import re
from typing import Any, Callable

import click

from cli import output
from cli.http import Client, DlogHTTPError, key_values, seg, with_client

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group()
def topic() -> None:
    """Topics: create, list, describe, alter-config, add-partitions, delete.

    Example:

    \b
        dlog topic create orders -p 6 -r 3 -c retention.ms=86400000
        dlog topic list
        dlog topic describe orders
    """


def _per_topic(topics: tuple[str, ...], action: Callable[[str], Any], as_json: bool,
               ok: Callable[[str, Any], dict] | None = None) -> None:
    """Run ``action`` on each topic, print a TOPIC/STATUS table (or JSON), and exit with the
    status of the first failure, its message on stderr, as rpk does for multi-topic verbs."""
    rows, results, first_error = [], [], None
    for name in topics:
        try:
            answer = action(name)
        except DlogHTTPError as exc:
            first_error = first_error or exc
            rows.append((name, exc.kafka_error or "ERROR"))
            results.append({"topic": name, "ok": False, "error": exc.message, "kafka_error": exc.kafka_error})
            click.echo(f"Error: {name}: {exc.format_message()}", err=True)
        else:
            rows.append((name, "OK"))
            results.append({"topic": name, "ok": True, **(ok(name, answer) if ok else {})})
    if as_json:
        output.print_json(results)
    else:
        output.table(["TOPIC", "STATUS"], rows)
    if first_error is not None:
        raise click.exceptions.Exit(first_error.exit_code)


# ---------------------------------------------------------------------------- create
@topic.command("create")
@click.argument("topics", nargs=-1, required=True)
@click.option("-p", "--partitions", type=click.IntRange(1), default=None,
              help="Partitions per topic (default: the server's num.partitions).")
@click.option("-r", "--replicas", type=click.IntRange(1), default=None,
              help="Replication factor (default: the server's default.replication.factor).")
@click.option("-c", "--topic-config", "configs", multiple=True, metavar="KEY=VALUE",
              help="A topic config, e.g. retention.ms=3600000; repeatable.")
@click.option("-d", "--dry-run", is_flag=True, help="Validate only (validate_only); create nothing.")
@JSON_OPTION
@with_client
def create(client: Client, topics: tuple[str, ...], partitions: int | None, replicas: int | None,
           configs: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Create one or more topics.

    Example:

    \b
        dlog topic create orders -p 6 -r 3
        dlog topic create audit -p 1 -r 1 -c cleanup.policy=delete -c retention.ms=-1
    """
    body: dict[str, Any] = {}
    if partitions is not None:
        body["partitions_count"] = partitions
    if replicas is not None:
        body["replication_factor"] = replicas
    if configs:
        body["configs"] = [{"name": n, "value": v} for n, v in key_values(configs, "'-c' / '--topic-config'")]
    if dry_run:
        body["validate_only"] = True
    _per_topic(topics, lambda name: client.post(client.v3("/topics"), {"topic_name": name, **body}), as_json,
               lambda name, t: {"partitions": t.get("partitions_count"), "replicas": t.get("replication_factor"),
                                "topic_id": t.get("topic_id")})


# ---------------------------------------------------------------------------- list
@topic.command("list")
@click.argument("patterns", nargs=-1)
@JSON_OPTION
@with_client
def list_topics(client: Client, patterns: tuple[str, ...], as_json: bool) -> None:
    """List topics, optionally only those matching any of the regular expressions given.

    Example:

    \b
        dlog topic list
        dlog topic list '^orders' --json
    """
    try:
        regexes = [re.compile(p) for p in patterns]
    except re.error as exc:
        raise click.BadParameter(str(exc), param_hint="PATTERNS") from None
    topics = [t for t in client.get(client.v3("/topics"))["data"]
              if not regexes or any(r.search(t["topic_name"]) for r in regexes)]
    if as_json:
        output.print_json([output.clean(t) for t in topics])
        return
    output.table(["NAME", "PARTITIONS", "REPLICAS"],
                 [(t["topic_name"], t["partitions_count"], t["replication_factor"]) for t in topics])


# ---------------------------------------------------------------------------- describe
@topic.command("describe")
@click.argument("topics", nargs=-1, required=True)
@click.option("-s", "--print-summary", "summary", is_flag=True, help="Print the summary section.")
@click.option("-c", "--print-configs", "configs", is_flag=True, help="Print the configs section.")
@click.option("-p", "--print-partitions", "partitions", is_flag=True, help="Print the partitions section.")
@click.option("-a", "--print-all", "print_all", is_flag=True, help="Print every section (the default).")
@JSON_OPTION
@with_client
def describe(client: Client, topics: tuple[str, ...], summary: bool, configs: bool, partitions: bool,
             print_all: bool, as_json: bool) -> None:
    """Describe topics: summary, configs (with their source) and partitions (leader, epoch,
    replicas, ISR, log start offset, high watermark, log end offset).

    With none of -s/-c/-p every section is printed. --json prints one object with topic,
    configs and partitions (a list of such objects when several topics are given).

    Example:

    \b
        dlog topic describe orders
        dlog topic describe orders -p
        dlog topic describe orders --json | jq '.partitions[].high_watermark'
    """
    if print_all or not (summary or configs or partitions):
        summary = configs = partitions = True
    documents = []
    for index, name in enumerate(topics):
        t = client.get(client.v3(f"/topics/{seg(name)}"))
        cfgs = client.get(client.v3(f"/topics/{seg(name)}/configs"))["data"] if configs or as_json else []
        parts = client.get(client.v3(f"/topics/{seg(name)}/partitions"))["data"] if partitions or as_json else []
        if as_json:
            documents.append({"topic": output.clean(t),
                              "configs": [{k: c.get(k) for k in ("name", "value", "source", "is_default",
                                                                  "is_read_only", "is_sensitive")} for c in cfgs],
                              "partitions": [output.clean(p) for p in parts]})
            continue
        if index:
            click.echo()
        _print_topic(t, cfgs, parts, summary, configs, partitions)
    if as_json:
        output.print_json(documents[0] if len(documents) == 1 else documents)


def _print_topic(t: dict, cfgs: list[dict], parts: list[dict], summary: bool, configs: bool,
                 partitions: bool) -> None:
    first = True

    def start(title: str) -> None:
        nonlocal first
        if not first:
            click.echo()
        first = False
        output.section(title)

    if summary:
        start("SUMMARY")
        output.pairs([("NAME", t["topic_name"]), ("ID", t.get("topic_id")), ("INTERNAL", t.get("is_internal")),
                      ("PARTITIONS", t["partitions_count"]), ("REPLICAS", t["replication_factor"])])
    if configs:
        start("CONFIGS")
        output.table(["KEY", "VALUE", "SOURCE"], [(c["name"], c.get("value"), c.get("source")) for c in cfgs])
    if partitions:
        start("PARTITIONS")
        output.table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START-OFFSET", "HIGH-WATERMARK",
                      "LOG-END-OFFSET"],
                     [(p["partition_id"], p.get("leader_id"), p.get("leader_epoch"), p.get("replica_ids"),
                       p.get("isr"), p.get("log_start_offset"), p.get("high_watermark"), p.get("log_end_offset"))
                      for p in parts])


# ---------------------------------------------------------------------------- alter-config
@topic.command("alter-config")
@click.argument("topics", nargs=-1, required=True)
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a config; repeatable.")
@click.option("-d", "--delete", "deletes", multiple=True, metavar="KEY",
              help="Reset a config to its default; repeatable.")
@click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")
@JSON_OPTION
@with_client
def alter_config(client: Client, topics: tuple[str, ...], sets: tuple[str, ...], deletes: tuple[str, ...],
                 dry_run: bool, as_json: bool) -> None:
    """Set or reset topic configs, all in one request per topic (configs:alter).

    Example:

    \b
        dlog topic alter-config orders --set retention.ms=3600000 --set min.insync.replicas=1
        dlog topic alter-config orders --delete retention.ms
    """
    if not sets and not deletes:
        raise click.UsageError("Nothing to change: give --set KEY=VALUE and/or --delete KEY.")
    data = [{"name": n, "value": v, "operation": "SET"} for n, v in key_values(sets, "'--set'")]
    data += [{"name": n, "operation": "DELETE"} for n in deletes]
    body = {"data": data, "validate_only": dry_run} if dry_run else {"data": data}
    _per_topic(topics, lambda name: client.post(client.v3(f"/topics/{seg(name)}/configs:alter"), body), as_json)


# ---------------------------------------------------------------------------- add-partitions
@topic.command("add-partitions")
@click.argument("topics", nargs=-1, required=True)
@click.option("-n", "--num", type=click.IntRange(1), required=True, help="How many partitions to add.")
@JSON_OPTION
@with_client
def add_partitions(client: Client, topics: tuple[str, ...], num: int, as_json: bool) -> None:
    """Add partitions to existing topics (keyed records may then map to other partitions).

    Example:

    \b
        dlog topic add-partitions orders -n 2
    """
    def grow(name: str) -> dict:
        current = client.get(client.v3(f"/topics/{seg(name)}"))["partitions_count"]
        return client.patch(client.v3(f"/topics/{seg(name)}"), {"partitions_count": current + num})

    _per_topic(topics, grow, as_json, lambda name, t: {"partitions": t.get("partitions_count")})


# ---------------------------------------------------------------------------- delete
@topic.command("delete")
@click.argument("topics", nargs=-1, required=True)
@JSON_OPTION
@with_client
def delete(client: Client, topics: tuple[str, ...], as_json: bool) -> None:
    """Delete topics and, shortly after, their logs on every broker.

    Example:

    \b
        dlog topic delete orders audit
    """
    _per_topic(topics, lambda name: client.delete(client.v3(f"/topics/{seg(name)}")), as_json)


def register(cli: click.Group) -> None:
    cli.add_command(topic)
