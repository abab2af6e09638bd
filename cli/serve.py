"""``dlog serve`` and ``dlog db upgrade``: the two commands that touch the data directory."""
from __future__ import annotations

import logging
import os

import click

from service.config import Config


def _config(**overrides) -> Config:
    return Config.from_env(**overrides)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", envvar="DLOG_HOST", default=None, help="Bind address (default 127.0.0.1).")
    @click.option("--port", envvar="DLOG_PORT", type=int, default=None, help="Port (default 8082).")
    @click.option("--data-dir", envvar="DLOG_DATA_DIR", default=None, help="Data directory (default ./dlog-data).")
    @click.option("--brokers", envvar="DLOG_BROKERS", type=click.IntRange(1, 64), default=None,
                  help="Number of brokers for a new data directory (default 3).")
    @click.option("--workers", envvar="DLOG_WORKERS", type=click.IntRange(1, 64), default=None,
                  help="gunicorn worker processes (default 2).")
    @click.option("--threads", envvar="DLOG_THREADS", type=click.IntRange(1, 256), default=None,
                  help="Threads per worker (default 4).")
    def serve(host, port, data_dir, brokers, workers, threads):
        """Run dlog under gunicorn until stopped (Ctrl-C or SIGTERM).

        Creates and migrates the data directory on first start, then starts the workers.

        Example:

            dlog serve --data-dir ./dlog-data --brokers 3 --workers 2
        """
        import shutil
        from pathlib import Path

        from service.server import DlogServer

        logging.basicConfig(level=os.environ.get("DLOG_LOG_LEVEL", "INFO"),
                            format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        config = _config(host=host, port=port, data_dir=data_dir, brokers=brokers, workers=workers, threads=threads)
        # The workers write their request metrics to files here and GET /metrics adds them up
        # (prometheus-client's multiprocess mode). Emptied at each start, so a killed run's
        # counts never reach the next; set before the workers fork, as prometheus-client
        # reads it when first imported (nothing in this process has imported it).
        metrics_dir = Path(config.data_dir) / ".prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        setup = DlogServer(config)
        setup.start_up(background=False)  # migrate and bootstrap once, before the workers fork
        setup.shut_down()
        os.environ.update(config.to_env())
        from cli.gunicorn_app import run

        try:
            run(config)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    @cli.group()
    def db():
        """The data directory's SQLite files.

        Example:

            dlog db upgrade --data-dir ./dlog-data
        """

    @db.command("upgrade")
    @click.option("--data-dir", envvar="DLOG_DATA_DIR", default=None, help="Data directory (default ./dlog-data).")
    @click.option("--brokers", envvar="DLOG_BROKERS", type=click.IntRange(1, 64), default=None,
                  help="Number of brokers for a new data directory (default 3).")
    def upgrade(data_dir, brokers):
        """Create or upgrade controller.db and every broker-<id>.db to the newest schema.

        Example:

            dlog db upgrade --data-dir ./dlog-data
        """
        from service.server import DlogServer

        config = _config(data_dir=data_dir, brokers=brokers)
        server = DlogServer(config)
        server.start_up(background=False)
        ids = server.controller.broker_ids()
        server.shut_down()
        click.echo(f"upgraded {config.data_dir}: controller.db and {len(ids)} broker files")
