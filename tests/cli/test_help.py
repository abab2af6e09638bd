"""The command tree is documented (every command's help ends with an example), completion
works, and the HTTP commands never import Flask or the storage layer."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cli.main import cli


def walk(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, group)]
    if isinstance(group, click.Group):
        for name, cmd in sorted(group.commands.items()):
            found += walk(cmd, path + (name,))
    return found


COMMANDS = walk(cli)


def test_command_tree():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"cluster info", "cluster health", "broker list", "broker describe", "broker stop", "broker start",
            "topic create", "topic list", "topic describe", "topic alter-config", "topic add-partitions",
            "topic delete", "produce", "consume", "serve", "db upgrade", "group list", "group describe",
            "group seek", "group delete", "txn list", "txn describe", "bench"} <= paths


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "dlog" for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path, command):
    assert command.help and "Example" in command.help, f"dlog {' '.join(path)} has no Example in its help"
    result = CliRunner().invoke(cli, list(path) + ["--help"], prog_name="dlog")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    # the example block keeps its line breaks (\b) and shows a real invocation
    example = result.output.split("Example:", 1)[1].split("\nOptions:", 1)[0]
    assert "dlog" in example and "\\b" not in result.output
    for line in filter(str.strip, example.splitlines()):  # kept verbatim (\b), one command a line
        assert line.startswith("    "), f"example lines were re-wrapped: {line!r}"
    if path and path[0] not in ("serve", "db"):
        assert isinstance(command, click.Group) or "--url" in result.output


def test_group_help_explains_completion_and_exit_codes():
    result = CliRunner().invoke(cli, ["--help"], prog_name="dlog")
    assert "_DLOG_COMPLETE=bash_source dlog" in result.output
    assert "3 not found" in result.output


def test_bash_completion_script():
    result = CliRunner().invoke(cli, [], prog_name="dlog", env={"_DLOG_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_dlog_completion" in result.output


def test_completion_of_subcommands():
    env = {"_DLOG_COMPLETE": "bash_complete", "COMP_WORDS": "dlog topic ", "COMP_CWORD": "2"}
    result = CliRunner().invoke(cli, [], prog_name="dlog", env=env)
    assert "plain,alter-config" in result.output and "plain,describe" in result.output


def test_cli_does_not_import_flask_or_storage(dlog_url):
    code = (
        "import sys\n"
        "from cli.main import cli\n"
        f"cli(['topic', 'list', '--url', {dlog_url!r}], standalone_mode=False)\n"
        f"cli(['cluster', 'info', '--url', {dlog_url!r}], standalone_mode=False)\n"
        f"cli(['group', 'list', '--url', {dlog_url!r}], standalone_mode=False)\n"
        f"cli(['txn', 'list', '--url', {dlog_url!r}], standalone_mode=False)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'alembic', 'werkzeug')\n"
        "       or m in ('service.db', 'service.server', 'service.controller', 'service.api')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "NAME" in proc.stdout and "CLUSTER" in proc.stdout
