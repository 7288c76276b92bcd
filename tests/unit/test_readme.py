"""The README's embedding example is real code: run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_embedding_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Embedding") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the Embedding section"
    script = tmp_path / "embed.py"
    script.write_text(match.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "serving /sync on http://127.0.0.1:" in done.stdout
    assert (tmp_path / "embedded.db").exists()
