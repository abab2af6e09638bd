"""The delivery-guarantee examples (examples/*.sh) run against a real ``dlog serve``: each
exits 0 only when what it observed is its guarantee, and says so in its RESULT line."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("python3") and shutil.which("bash")),
                                reason="the examples need bash, curl and python3")


def run(script: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLOG_")}
    env["DLOG_URL"] = url
    return subprocess.run(["bash", str(EXAMPLES / script)], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


EXPECTED = {
    "at-most-once.sh": [
        "   committed through offset 5, before sending",
        "   !! worker killed (SIGKILL) after sending email-4, with the rest of the batch unsent",
        "RESULT at-most-once: 7 e-mails, 5 sent, lost: email-5 email-6, sent twice: none",
    ],
    "at-least-once.sh": [
        "   !! worker killed (SIGKILL) after charging pay-5, before committing",
        "   charged pay-4 (offset 3)",
        "RESULT at-least-once: 6 payments, 8 charges, lost: none, charged twice: pay-4 pay-5",
    ],
    "exactly-once.sh": [
        "   !! worker killed (SIGKILL) after writing receipts and sending offsets, before committing",
        "   committed: receipts and offset together (next epoch 5)",
        "RESULT exactly-once: 6 payments, 6 receipts for read_committed readers, lost: none, duplicates: none, "
        "aborted receipts seen only by read_uncommitted: 3, lag: 0",
    ],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_shows_its_guarantee(groups_dlog, script):
    result = run(script, groups_dlog.url)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    for line in EXPECTED[script]:
        assert line in lines, f"missing {line!r} in\n{result.stdout}"
    # Only the simulated crash is reported on stderr (bash's "Killed" notice), never an HTTP error.
    assert "!! " not in result.stderr and "HTTP" not in result.stderr, result.stderr


def test_examples_are_idempotent_to_rerun(groups_dlog):
    """Each run uses its own topic and group names: a second run sees a fresh world."""
    first = run("at-most-once.sh", groups_dlog.url)
    second = run("at-most-once.sh", groups_dlog.url)
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    assert first.stdout.splitlines()[0] != second.stdout.splitlines()[0]  # "== ... topic <unique>"
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]


def test_examples_say_when_dlog_is_not_running():
    result = run("at-least-once.sh", f"http://127.0.0.1:{free_port()}", timeout=30)
    assert result.returncode == 2
    assert "dlog is not answering" in result.stderr


def test_examples_have_a_worst_moment_header():
    for script in EXPECTED:
        text = (EXAMPLES / script).read_text()
        header = text.split("\n. ")[0]
        assert "worst moment" in header and "DLOG_URL" in header, script
        assert os.access(EXAMPLES / script, os.X_OK), f"{script} is not executable"
