"""``dlog``: the command group. ``serve`` and ``db`` work on the data directory; every other
command speaks HTTP to ``--url`` so it works against any running dlog."""
from __future__ import annotations

import click

from cli import admin, serve

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="dlog")
def cli() -> None:
    """dlog: a durable log with Apache Kafka's delivery semantics, in SQLite, over HTTP.

    Example:

        dlog serve            # a three-broker cluster on 127.0.0.1:8082, data in ./dlog-data
    """


serve.register(cli)
admin.register(cli)

if __name__ == "__main__":  # pragma: no cover
    cli()
