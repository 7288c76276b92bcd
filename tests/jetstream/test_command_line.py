"""``trio-sync serve --jetstream`` as an operator starts it."""

from __future__ import annotations

from pathlib import Path

from ..e2e.test_cli import run_cli


def test_a_jetstream_url_that_is_not_nats_is_one_clear_line(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        "--database",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--listen",
        "127.0.0.1:0",
        "--jetstream",
        "http://127.0.0.1:4222",
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "trio-sync: --jetstream must be nats://HOST:PORT, not 'http://127.0.0.1:4222'"
    ]
