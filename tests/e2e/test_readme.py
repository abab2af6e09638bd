"""The README's curl walkthrough, run as written (bash + curl) against a real ``dlog serve``."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _walkthrough_script() -> str:
    text = README.read_text()
    section = text[text.index("## A walkthrough with curl"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_walkthrough_runs_as_written(dlog):
    script = _walkthrough_script().replace("URL=http://127.0.0.1:8082", f"URL={dlog.url}")
    assert f"URL={dlog.url}" in script, "the walkthrough must start by setting URL"
    out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    # Every answer is JSON: parse the concatenated output value by value.
    decoder, text, pos, parsed = json.JSONDecoder(), out.stdout, 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        parsed.append(value)
    for answer in parsed:
        items = answer if isinstance(answer, list) else [answer]
        for item in items:
            if isinstance(item, dict) and "error_code" in item:
                assert item["error_code"] in (200, None), item
    # The two reads at the end return what was produced.
    json_read = next(p for p in parsed if isinstance(p, list) and p and p[0].get("topic") == "orders")
    assert {"hello", "[1, 2, 3]"} <= {json.dumps(r["value"]) if not isinstance(r["value"], str) else r["value"]
                                      for r in json_read}
    raw_read = next(p for p in parsed if isinstance(p, list) and p and p[0].get("topic") == "raw")
    assert raw_read[0]["value"] == "d29ybGQ="
