"""HTTP-speaking commands (filled in by the command-line issue)."""
from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    return None
