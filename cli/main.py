"""``dlog``: the command group. ``serve`` and ``db`` work on the data directory; every other
command speaks HTTP to ``--url`` (env ``DLOG_URL``) so it works against any running dlog."""
from __future__ import annotations

import click

from cli import bench, broker, cluster, consume, group, produce, serve, topic, txn

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="dlog")
def cli() -> None:
    """dlog: a durable log with Apache Kafka's delivery semantics, in SQLite, over HTTP.

    `serve` and `db` work on a data directory; every other command talks to a running dlog
    at --url (env DLOG_URL, default http://127.0.0.1:8082) and works against any dlog.

    Exit status: 0 ok, 1 other error, 2 bad input or usage, 3 not found, 4 unavailable
    (retriable, or the server cannot be reached), 5 timed out (the outcome is unknown).

    Shell completion (bash; use zsh_source or fish_source for those shells):

    \b
        eval "$(_DLOG_COMPLETE=bash_source dlog)"

    Example:

    \b
        dlog serve            # a three-broker cluster on 127.0.0.1:8082, data in ./dlog-data
        dlog topic create orders -p 3 -r 1
        printf 'k1:hello\\nk2:world\\n' | dlog produce orders -k ':'
        dlog consume orders -e -f '%p/%o %k=%v\\n'
        dlog consume orders --group billing -e
        dlog group describe billing
        dlog bench -n 100000 -c 8
    """


serve.register(cli)
for module in (cluster, broker, topic, produce, consume, group, txn, bench):
    module.register(cli)

if __name__ == "__main__":  # pragma: no cover
    cli()
