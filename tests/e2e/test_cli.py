"""The ``trio-sync`` command as operators use it, each run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

from trio_sync.roomlog import RoomLog, dumps_lines
from trio_sync.storage.migrations import migration_files

from ..conftest import nio_accepts

CLI = [sys.executable, "-m", "trio_sync.cli"]
ROOM, ALICE, BOB = "!cli:example.org", "@alice:example.org", "@bob:example.org"
SERVER = ("--server-name", "example.org")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def running(*args: str, ready: str) -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    """Start the CLI, wait for a stdout line matching ``ready``; kill it if still running.

    Once it has ended, its whole stderr is ``proc.captured_stderr``."""
    with (
        tempfile.TemporaryFile("w+") as stderr,
        subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=stderr, text=True) as proc,
    ):
        assert proc.stdout is not None
        timer = threading.Timer(30, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                match = re.search(ready, line)
                if match:
                    break
            else:
                stderr.seek(0)
                raise AssertionError(f"exited before ready: {proc.wait()} {stderr.read()}")
        finally:
            timer.cancel()
        try:
            yield proc, match
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            stderr.seek(0)
            proc.captured_stderr = stderr.read()  # type: ignore[attr-defined]


def community_log(path: Path) -> list[str]:
    log = RoomLog("example.org")
    messages = log.create_room(ROOM, ALICE, "CLI room")
    messages.append(log.member(ROOM, BOB, "join"))
    messages += [log.message(ROOM, ALICE, f"line {n}") for n in range(200)]
    path.write_bytes(dumps_lines(messages))
    return [m["new_room_event"]["event"]["_event_id"] for m in messages]


def test_migrate_token_ingest_and_rerun(db_url: str, tmp_path: Path) -> None:
    migrated = run_cli("migrate", "--database", db_url)
    assert migrated.returncode == 0, migrated.stderr
    versions = [version for version, _ in migration_files()]
    assert f"applied migrations {versions}" in migrated.stdout
    assert "up to date" in run_cli("migrate", "--database", db_url).stdout

    token = run_cli(
        "token", "add", ALICE, "PHONE", "--database", db_url, "--token", "tok-1", *SERVER
    )
    assert token.returncode == 0 and token.stdout.strip() == "tok-1"
    random_token = run_cli("token", "add", BOB, "PHONE", "--database", db_url, *SERVER)
    assert random_token.returncode == 0 and len(random_token.stdout.strip()) > 20

    log_path = tmp_path / "room.log"
    ids = community_log(log_path)
    first = run_cli("ingest", str(log_path), "--database", db_url)
    assert first.returncode == 0, first.stderr
    assert f"s{len(ids)}_0_0_0_0_0_0_0_0" in first.stdout
    assert f"{len(ids)} applied, 0 duplicates, 0 rejected" in first.stdout
    assert "%" not in first.stderr  # no progress bar when stderr is not a terminal
    again = run_cli("ingest", str(log_path), "--database", db_url, "--quiet")
    assert again.returncode == 0
    assert f"s{len(ids)}_0_0_0_0_0_0_0_0" in again.stdout  # nothing doubled
    assert "0 applied, 0 duplicates, 0 rejected" in again.stdout


def test_serve_answers_and_stops_gracefully_on_sigterm(db_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "room.log"
    ids = community_log(log_path)
    assert (
        run_cli(
            "token", "add", BOB, "LAPTOP", "--token", "bob-tok", "--database", db_url, *SERVER
        ).returncode
        == 0
    )
    env_db = {"TRIO_SYNC_DATABASE": db_url}
    args = ("serve", "--listen", "127.0.0.1:0", "--log", str(log_path))
    os.environ.update(env_db)
    try:
        with running(*args, ready=r"listening on (http://\S+)") as (proc, match):
            base = match.group(1)
            headers = {"Authorization": "Bearer bob-tok"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                body: dict[str, object] = {}
                for _ in range(100):  # the followed log is ingested in the background
                    body = client.get("/_matrix/client/v3/sync").json()
                    if body["next_batch"] == f"s{len(ids)}_0_0_0_0_0_0_0_0":
                        break
                    threading.Event().wait(0.1)
                nio_accepts(body)
                assert ROOM in body["rooms"]["join"]  # type: ignore[index]
                since = body["next_batch"]
                result: dict[str, httpx.Response] = {}

                def long_poll() -> None:
                    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                        result["r"] = c.get(
                            "/_matrix/client/v3/sync", params={"since": since, "timeout": "25000"}
                        )

                poller = threading.Thread(target=long_poll)
                poller.start()
                threading.Event().wait(0.5)  # let the poll park
                proc.send_signal(signal.SIGTERM)
                poller.join(timeout=20)
                assert not poller.is_alive(), "the in-flight long-poll was not answered"
                assert result["r"].status_code == 200
                assert result["r"].json()["next_batch"] == since
            assert proc.wait(timeout=20) == 0
    finally:
        os.environ.pop("TRIO_SYNC_DATABASE", None)


def test_demo_prints_a_working_curl_line() -> None:
    with running("demo", "--listen", "127.0.0.1:0", ready=r"curl -s -H '([^']+)' '([^']+)'") as (
        proc,
        match,
    ):
        header, url = match.group(1), match.group(2)
        name, _, value = header.partition(": ")
        body = httpx.get(url, headers={name: value}, timeout=30).json()
        nio_accepts(body)
        rooms = body["rooms"]
        assert len(rooms["join"]) == 2 and len(rooms["invite"]) == 1
        events = sum(len(r["timeline"]["events"]) for r in rooms["join"].values())
        assert events > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_bad_database_url_is_a_clear_error() -> None:
    done = run_cli("migrate", "--database", "mysql://nope")
    assert done.returncode == 1
    assert "unsupported database URL" in done.stderr
    assert orjson.dumps(done.stderr)  # printable, no traceback dump
    assert "Traceback" not in done.stderr


def test_missing_log_file_and_missing_database_are_clear_errors(
    db_url: str, tmp_path: Path
) -> None:
    missing = run_cli("ingest", str(tmp_path / "nope.log"), "--database", db_url)
    assert missing.returncode == 1
    assert "nope.log" in missing.stderr and "Traceback" not in missing.stderr
    if db_url.startswith("sqlite"):
        bad = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    else:
        bad = db_url.rpartition("/")[0] + "/trio_sync_no_such_database"
    unreachable = run_cli("migrate", "--database", bad)
    assert unreachable.returncode == 1
    assert "Traceback" not in unreachable.stderr
