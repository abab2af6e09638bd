"""Alembic, driven from code: ``upgrade_engine`` brings one file to the newest schema.

Both kinds of file share ``migrations/env.py``; each kind has its own version directory
(``migrations/controller``, ``migrations/broker``) and its own target metadata.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
KINDS = ("controller", "broker")


def alembic_config(kind: str) -> AlembicConfig:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of file {kind!r}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Split version_locations on os.pathsep only: the legacy split on spaces and commas breaks
    # an install path with a space in it (and alembic warns about it).
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / kind))
    cfg.attributes["kind"] = kind
    return cfg


def upgrade_engine(engine: Engine, kind: str, revision: str = "head") -> None:
    """Run ``alembic upgrade`` on one file, in its own connection and transaction."""
    cfg = alembic_config(kind)
    with engine.connect() as conn:
        # BEGIN IMMEDIATE: two processes starting at once must not both create the tables.
        conn.execution_options(dlog_begin="BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
