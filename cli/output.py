"""Printing: plain aligned tables for people, JSON for machines."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import click


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print ``rows`` under upper-case ``headers`` in columns two spaces apart (as rpk does)."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    for row in [list(headers)] + text_rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def pairs(rows: Iterable[tuple[str, Any]]) -> None:
    """Print ``name value`` lines with the values aligned."""
    rows = [(k, cell(v)) for k, v in rows]
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")


def section(title: str) -> None:
    click.echo(title)
    click.echo("=" * len(title))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def clean(resource: dict) -> dict:
    """A v3 resource without ``kind``, ``metadata`` and ``{"related": url}`` links."""
    return {k: v for k, v in resource.items()
            if k not in ("kind", "metadata") and not (isinstance(v, dict) and set(v) == {"related"})}
