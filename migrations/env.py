"""Alembic environment shared by controller.db and broker-<id>.db.

The caller (``service.migrate``) passes the open connection and the kind of file in
``config.attributes``; the target metadata is that kind's metadata in ``service.schema``.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service import schema

config = context.config
kind = config.attributes.get("kind") or context.get_x_argument(as_dictionary=True).get("kind", "controller")
target_metadata = schema.controller_metadata if kind == "controller" else schema.broker_metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
