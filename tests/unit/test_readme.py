"""The README's embedding example is real code: run it, sync against it, stop it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

README = Path(__file__).resolve().parents[2] / "README.md"


def test_embedding_example_serves_until_interrupted(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Embedding") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the Embedding section"
    script = tmp_path / "embed.py"
    script.write_text(match.group(1))
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            served = re.search(r"serving /sync on (http://127\.0\.0\.1:\d+) with token (\S+)", line)
            assert served, line + proc.stderr.read()  # type: ignore[union-attr]
            url, token = served.groups()
            r = httpx.get(
                f"{url}/_matrix/client/v3/sync",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert r.status_code == 200
            assert proc.poll() is None  # still serving
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert (tmp_path / "embedded.db").exists()
