"""``dlog group``: consumer groups: list, describe (lag per partition), seek, delete (rpk's verbs)."""
from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.http import Client, DlogHTTPError, seg, with_client
from cli.lookup import offsets_for_times
from cli.records import TIMESTAMP_HELP, parse_timestamp

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


@click.group()
def group() -> None:
    """Consumer groups: list, describe, seek (reset committed offsets), delete.

    Example:

    \b
        dlog group list
        dlog group describe billing
        dlog group seek billing --to start --topic orders
        dlog group delete billing
    """


def _gpath(client: Client, name: str, tail: str = "") -> str:
    return client.v3(f"/consumer-groups/{seg(name)}{tail}")


def _related_id(link: Any) -> Any:
    tail = ((link or {}).get("related") or "").rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


# ---------------------------------------------------------------------------- list
@group.command("list")
@JSON_OPTION
@with_client
def list_groups(client: Client, as_json: bool) -> None:
    """List consumer groups (those with members or committed offsets): state, members, generation.

    Example:

    \b
        dlog group list
        dlog group list --json | jq -r '.[].consumer_group_id'
    """
    groups = client.get(client.v3("/consumer-groups"))["data"]
    members = {}
    for g in groups:
        try:
            gid = g["consumer_group_id"]
            members[gid] = len(client.get(_gpath(client, gid, "/consumers"))["data"])
        except DlogHTTPError as exc:  # deleted meanwhile
            if exc.exit_code != 3:
                raise
    if as_json:
        output.print_json([{**output.clean(g), "members": members.get(g["consumer_group_id"])} for g in groups])
        return
    output.table(["GROUP", "STATE", "MEMBERS", "GENERATION", "COORDINATOR"],
                 [(g["consumer_group_id"], g.get("state"), members.get(g["consumer_group_id"]), g.get("generation_id"),
                   _related_id(g.get("coordinator"))) for g in groups])


# ---------------------------------------------------------------------------- describe
@group.command("describe")
@click.argument("groups", nargs=-1, required=True)
@JSON_OPTION
@with_client
def describe(client: Client, groups: tuple[str, ...], as_json: bool) -> None:
    """Describe groups: state, generation, members, total lag, and per partition the committed
    offset, the end offset and the lag with the owning member (kafka-consumer-groups
    --describe). Lag counts records, never transaction markers.

    Example:

    \b
        dlog group describe billing
        dlog group describe billing audit --json
    """
    documents = []
    for index, name in enumerate(groups):
        g = client.get(_gpath(client, name))
        consumers = client.get(_gpath(client, name, "/consumers"))["data"]
        lags = client.get(_gpath(client, name, "/lags"))["data"]
        summary = client.get(_gpath(client, name, "/lag-summary"))
        if as_json:
            documents.append({"group": output.clean(g), "members": [output.clean(c) for c in consumers],
                              "lags": [output.clean(x) for x in lags], "total_lag": summary.get("total_lag")})
            continue
        if index:
            click.echo()
        output.pairs([("GROUP", g["consumer_group_id"]), ("COORDINATOR", _related_id(g.get("coordinator"))),
                      ("STATE", g.get("state")), ("GENERATION", g.get("generation_id")),
                      ("ASSIGNOR", g.get("partition_assignor")), ("MEMBERS", len(consumers)),
                      ("TOTAL-LAG", summary.get("total_lag"))])
        if consumers:
            click.echo()
            output.table(["MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "ISOLATION"],
                         [(c["consumer_id"], c.get("instance_id"), c.get("client_id"), c.get("isolation_level"))
                          for c in consumers])
        click.echo()
        output.table(["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "CLIENT-ID"],
                     [(x["topic_name"], x["partition_id"], x.get("current_offset"), x.get("log_end_offset"),
                       x.get("lag"), x.get("consumer_id") or None, x.get("client_id") or None)
                      for x in sorted(lags, key=lambda x: (x["topic_name"], x["partition_id"]))])
    if as_json:
        output.print_json(documents[0] if len(documents) == 1 else documents)


# ---------------------------------------------------------------------------- seek
def parse_topics(values: tuple[str, ...]) -> dict[str, list[int] | None]:
    """``--topic orders --topic audit:0,2`` as ``{"orders": None, "audit": [0, 2]}`` (None: all)."""
    out: dict[str, list[int] | None] = {}
    for value in values:
        name, sep, plist = value.partition(":")
        if not name:
            raise click.BadParameter(f"{value!r} names no topic.", param_hint="'--topic'")
        if not sep:
            out[name] = None
            continue
        try:
            chosen = sorted({int(p) for p in plist.split(",") if p.strip()})
        except ValueError:
            raise click.BadParameter(f"{value!r}: partitions are numbers, as orders:0,2.",
                                     param_hint="'--topic'") from None
        if not chosen or min(chosen) < 0:
            raise click.BadParameter(f"{value!r}: give partitions as orders:0,2.", param_hint="'--topic'")
        previous = out.get(name, [])
        out[name] = None if previous is None and name in out else sorted(set(previous or []) | set(chosen))
    return out


def parse_target(text: str) -> tuple[str, int]:
    """``--to``: ("start", 0), ("end", 0), ("abs", N) or ("ts", epoch ms)."""
    t = text.strip().lower()
    if t in ("start", "oldest", "beginning", "earliest"):
        return "start", 0
    if t in ("end", "newest", "latest"):
        return "end", 0
    if t.startswith("@"):
        try:
            return "ts", parse_timestamp(text.strip()[1:])
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a timestamp. {TIMESTAMP_HELP}.", param_hint="'--to'") from None
    if t.isdigit():
        return "abs", int(t)
    raise click.BadParameter(f"{text!r} is not start, end, an offset or @TIMESTAMP.", param_hint="'--to'")


@group.command("seek")
@click.argument("group_id", metavar="GROUP")
@click.option("--to", "to", required=True, metavar="TARGET",
              help="start, end, an offset N (clamped to the log), or @TIMESTAMP (the first record at or after "
                   "it: epoch ms, ISO-8601, or a time ago such as @-1h).")
@click.option("-t", "--topic", "topics", multiple=True, metavar="TOPIC[:P,...]",
              help="Topics (optionally partitions) to move; repeatable. Default: every topic the group has "
                   "committed offsets for.")
@click.option("--dry-run", is_flag=True, help="Show the new offsets; change nothing.")
@JSON_OPTION
@with_client
def seek(client: Client, group_id: str, to: str, topics: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Set a group's committed offsets (rpk group seek, kafka-consumer-groups --reset-offsets).

    The group must have no members (stop its consumers first); a group that does not exist
    yet gets the offsets, so its first consumer starts there. end is the high watermark; N
    is clamped to [log start, high watermark]. Prints the prior and the new offset of each
    partition.

    Example:

    \b
        dlog group seek billing --to start
        dlog group seek billing --to end --topic orders:0,1
        dlog group seek billing --to 1500 --topic orders
        dlog group seek billing --to @2024-05-01T00:00:00Z --topic orders --dry-run
    """
    kind, value = parse_target(to)
    try:
        committed = client.get(_gpath(client, group_id, "/offsets"))["data"]
    except DlogHTTPError as exc:
        if exc.kafka_error != "GROUP_ID_NOT_FOUND":
            raise
        committed = []
    prior = {(o["topic_name"], o["partition_id"]): o["offset"] for o in committed}
    wanted = parse_topics(topics)
    if not wanted:
        for t, p in prior:
            wanted.setdefault(t, []).append(p)  # type: ignore[union-attr]
        if not wanted:
            raise click.UsageError(f"Group {group_id} has no committed offsets: name the topics with --topic.")
    rows = []
    for topic, chosen in wanted.items():
        parts = {p["partition_id"]: p for p in client.get(client.v3(f"/topics/{seg(topic)}/partitions"))["data"]}
        for p in chosen or []:
            if p not in parts:
                raise DlogHTTPError(f"Partition {p} of topic {topic!r} not found (it has {len(parts)}).", 404, 40402,
                                    "UNKNOWN_TOPIC_OR_PARTITION")
        pids = sorted(chosen or parts)
        by_time = offsets_for_times(client, topic, pids, [value]).get(value, {}) if kind == "ts" else {}
        for pid in pids:
            log_start, hw = parts[pid]["log_start_offset"], parts[pid]["high_watermark"]
            if hw is None:
                raise DlogHTTPError(f"Partition {topic}-{pid} has no leader (its replicas' brokers are offline).",
                                    503, 503, "LEADER_NOT_AVAILABLE")
            new = {"start": log_start, "end": hw, "abs": min(max(value, log_start), hw)}.get(kind)
            rows.append((topic, pid, prior.get((topic, pid)), by_time[pid] if kind == "ts" else new))
    if not dry_run:
        client.post(_gpath(client, group_id, "/offsets"),
                    {"offsets": [{"topic_name": t, "partition_id": p, "offset": o} for t, p, _, o in rows]})
    if as_json:
        output.print_json({"group": group_id, "dry_run": dry_run, "offsets": [
            {"topic": t, "partition": p, "prior_offset": before, "new_offset": o} for t, p, before, o in rows]})
        return
    output.table(["TOPIC", "PARTITION", "PRIOR-OFFSET", "NEW-OFFSET"], rows)
    if dry_run:
        click.echo("(dry run: nothing was changed)", err=True)


# ---------------------------------------------------------------------------- delete
@group.command("delete")
@click.argument("groups", nargs=-1, required=True)
@JSON_OPTION
@with_client
def delete(client: Client, groups: tuple[str, ...], as_json: bool) -> None:
    """Delete groups without members, with their committed offsets.

    Example:

    \b
        dlog group delete billing audit
    """
    rows, results, first_error = [], [], None
    for name in groups:
        try:
            client.delete(_gpath(client, name))
        except DlogHTTPError as exc:
            first_error = first_error or exc
            rows.append((name, exc.kafka_error or "ERROR"))
            results.append({"group": name, "ok": False, "error": exc.message, "kafka_error": exc.kafka_error})
            click.echo(f"Error: {name}: {exc.format_message()}", err=True)
        else:
            rows.append((name, "OK"))
            results.append({"group": name, "ok": True})
    if as_json:
        output.print_json(results)
    else:
        output.table(["GROUP", "STATUS"], rows)
    if first_error is not None:
        raise click.exceptions.Exit(first_error.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(group)
