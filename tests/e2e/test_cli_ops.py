"""The ``trio-sync`` command as an operator meets it: clear one-line errors before
anything is created, settings everywhere, token management, the quarantine, logs that
never show a token. Each run is a real process."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import orjson

from trio_sync.cli import _parser
from trio_sync.roomlog import RoomLog, dumps_lines

from .test_cli import ALICE, BOB, CLI, ROOM, SERVER, community_log, run_cli, running


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed run (asserting there is exactly one)."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_listen_errors_name_the_address_and_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        line = one_line_error(
            run_cli("serve", "--listen", address, "--database", f"sqlite:///{db}")
        )
        assert address in line and "cannot listen" in line
    line = one_line_error(
        run_cli("serve", "--listen", "127.0.0.1:70000", "--database", f"sqlite:///{db}")
    )
    assert "70000" in line and "out of range" in line
    line = one_line_error(run_cli("serve", "--listen", "nohost", "--database", f"sqlite:///{db}"))
    assert "'nohost'" in line
    line = one_line_error(
        run_cli("serve", "--metrics-listen", "127.0.0.1:-1", "--database", f"sqlite:///{db}")
    )
    assert "metrics_listen" in line
    assert not db.exists()


def test_missing_ingest_file_is_reported_before_a_database_is_created(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    line = one_line_error(
        run_cli("ingest", str(tmp_path / "nope.log"), "--database", f"sqlite:///{db}")
    )
    assert "nope.log" in line and "does not exist" in line
    assert not db.exists()


def test_bad_config_file_and_bad_values_name_what_is_wrong(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('database = "sqlite:///x.db"\nlisten = \n')
    line = one_line_error(run_cli("migrate", "--config", str(bad_toml)))
    assert str(bad_toml) in line and "line 2" in line

    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('batch_size = "many"\n')
    line = one_line_error(run_cli("migrate", "--config", str(wrong_type)))
    assert "batch_size" in line and str(wrong_type) in line

    line = one_line_error(run_cli("serve", "--batch-size", "lots"))
    assert "--batch-size" in line
    env = {**os.environ, "TRIO_SYNC_FOLLOW_POLL_INTERVAL": "0"}
    done = subprocess.run([*CLI, "migrate"], capture_output=True, text=True, env=env, timeout=60)
    line = one_line_error(done)
    assert "follow_poll_interval" in line and "environment" in line
    line = one_line_error(run_cli("migrate", "--config", str(tmp_path / "absent.toml")))
    assert "absent.toml" in line and "does not exist" in line
    assert not (tmp_path / "x.db").exists()


def test_config_after_the_command_version_and_help(tmp_path: Path) -> None:
    config = tmp_path / "trio-sync.toml"
    db = tmp_path / "from-config.db"
    config.write_text(f'database = "sqlite:///{db}"\n')
    assert run_cli("migrate", "--config", str(config)).returncode == 0
    assert db.exists()
    assert "up to date" in run_cli("--config", str(config), "migrate").stdout

    version = run_cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"trio-sync \d+\.\d+\.\d+\n", version.stdout)

    for command in (
        [], ["serve"], ["token"], ["token", "add"], ["token", "list"], ["token", "revoke"],
        ["ingest"], ["rejects"], ["migrate"], ["demo"],
    ):  # fmt: skip
        shown = run_cli(*command, "--help")
        assert shown.returncode == 0
        assert "``" not in shown.stdout and ":func:" not in shown.stdout
    serve_help = run_cli("serve", "--help").stdout
    for flag in (
        "--graceful-timeout", "--keep-alive-timeout", "--batch-size", "--follow-poll-interval",
        "--access-log", "--log-format", "--metrics-listen", "--ingest-secret", "--server-name",
    ):  # fmt: skip
        assert flag in serve_help


def test_every_argument_is_described() -> None:
    def walk(parser: object) -> list[tuple[str, str | None]]:
        out = []
        for action in parser._actions:  # type: ignore[attr-defined]
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):  # subcommands
                for sub in choices.values():
                    out += walk(sub)
            else:
                out.append((action.dest, action.help))
        return out

    undescribed = [dest for dest, text in walk(_parser()) if not text]
    assert undescribed == []


def test_token_add_list_revoke(db_url: str, tmp_path: Path) -> None:
    def token(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("token", *args, "--database", db_url)

    assert "not a user ID" in one_line_error(token("add", "alice", "PHONE", *SERVER))
    assert "not a user of this server" in one_line_error(token("add", ALICE, "PHONE"))
    assert "device ID" in one_line_error(token("add", ALICE, "", *SERVER))
    assert "device ID" in one_line_error(token("add", ALICE, "MY PHONE", *SERVER))

    assert token("add", ALICE, "PHONE", "--token", "alice-1", *SERVER).returncode == 0
    assert token("add", BOB, "LAPTOP", "--token", "bob-1", *SERVER).returncode == 0
    line = one_line_error(token("add", BOB, "PHONE", "--token", "alice-1", *SERVER))
    assert f"already the token of {ALICE} device PHONE" in line

    again = token("add", ALICE, "PHONE", "--token", "alice-2", *SERVER)
    assert again.returncode == 0 and again.stdout.strip() == "alice-2"
    assert "previous token stops working" in again.stderr

    listed = token("list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [[ALICE, "PHONE"], [BOB, "LAPTOP"]]
    assert "alice-2" not in token("list").stdout  # tokens are never shown
    assert [line.split("\t")[:2] for line in token("list", BOB).stdout.splitlines()] == [
        [BOB, "LAPTOP"]
    ]

    assert "either TOKEN or both" in one_line_error(token("revoke"))
    assert "either TOKEN or both" in one_line_error(token("revoke", "--user", BOB))
    assert "no device has this token" in one_line_error(token("revoke", "alice-1"))
    revoked = token("revoke", "alice-2")
    assert revoked.returncode == 0 and f"{ALICE} device PHONE" in revoked.stdout
    by_device = token("revoke", "--user", BOB, "--device", "LAPTOP")
    assert by_device.returncode == 0
    assert token("list").stdout == ""

    assert token("add", BOB, "TABLET", "--token", "bob-2", *SERVER).returncode == 0
    with running(
        "serve", "--listen", "127.0.0.1:0", "--database", db_url, ready=r"listening on (http://\S+)"
    ) as (
        _,
        match,
    ):
        url = match.group(1) + "/_matrix/client/v3/sync"
        for revoked_token in ("alice-1", "alice-2", "bob-1"):
            r = httpx.get(url, headers={"Authorization": f"Bearer {revoked_token}"}, timeout=30)
            assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
        assert (
            httpx.get(url, headers={"Authorization": "Bearer bob-2"}, timeout=30).status_code == 200
        )


def test_ingest_summary_rejects_listing_and_all_rejected_exit(db_url: str, tmp_path: Path) -> None:
    log = RoomLog("example.org")
    messages = [*log.create_room(ROOM, ALICE), log.message(ROOM, ALICE, "hello")]
    mixed = tmp_path / "mixed.log"
    bad = b'{"type": "new_room_event", "new_room_event": {"event": 42}}'
    mixed.write_bytes(
        dumps_lines(messages[:2]) + b"not json at all\n" + dumps_lines(messages[2:]) + bad + b"\n"
    )
    done = run_cli("ingest", str(mixed), "--database", db_url)
    assert done.returncode == 0, done.stderr
    assert f"{len(messages)} applied, 0 duplicates, 2 rejected" in done.stdout
    assert "trio-sync rejects" in done.stderr

    rejects = run_cli("rejects", "--database", db_url)
    assert rejects.returncode == 0
    text = rejects.stdout
    offset = len(dumps_lines(messages[:2]))
    assert f"offset {offset}" in text and "not json at all" in text
    assert text.count("reason:") == 2 and str(mixed.resolve()) in text
    assert "2 rejected message(s)" in rejects.stderr
    last = run_cli("rejects", "--limit", "1", "--database", db_url)
    assert last.stdout.count("reason:") == 1 and '"event": 42' in last.stdout
    assert "1 of 2 rejected" in last.stderr

    hopeless = tmp_path / "hopeless.log"
    hopeless.write_bytes(b"garbage\n[]\n")
    done = run_cli("ingest", str(hopeless), "--database", db_url)
    assert done.returncode == 1
    assert "0 applied, 0 duplicates, 2 rejected" in done.stdout
    assert "every message" in done.stderr


def test_progress_bar_draws_on_a_terminal_only(db_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "room.log"
    ids = community_log(log_path)
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [*CLI, "ingest", str(log_path), "--database", db_url],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        ) as proc:
            os.close(terminal)
            terminal = -1
            drawn = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal's other end closed
                    break
                if not chunk:
                    break
                drawn += chunk
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = drawn.decode()
    assert "100.0%" in text and "events/s" in text
    assert f"{len(ids)} events" in text
    assert f"{len(ids)} applied" in out


def test_logs_never_show_a_token(db_url: str, tmp_path: Path) -> None:
    secret_token = "tsy_SECRET_do_not_log_7f3a"
    ingest_secret = "push-secret-91c2"
    assert (
        run_cli(
            "token", "add", BOB, "PHONE", "--token", secret_token, "--database", db_url, *SERVER
        ).returncode
        == 0
    )
    missing_log = tmp_path / "later.log"
    args = (
        "serve", "--listen", "127.0.0.1:0", "--database", db_url, "--access-log",
        "--log-format", "json", "-v", "--log", str(missing_log), "--ingest-secret", ingest_secret,
    )  # fmt: skip
    with running(*args, ready=r"listening on (http://\S+)") as (proc, match):
        base = match.group(1)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert (
                http.get(f"/_matrix/client/v3/sync?access_token={secret_token}").status_code == 200
            )
            headers = {"Authorization": f"Bearer {secret_token}"}
            assert http.get("/_matrix/client/v3/joined_rooms", headers=headers).status_code == 200
            assert (
                http.get("/_matrix/client/v3/sync?access_token=wrong-token-123").status_code == 401
            )
            push = http.post(
                "/_trio_sync/v1/ingest",
                content=b"not json\n",
                headers={"Authorization": f"Bearer {ingest_secret}"},
            )
            assert push.status_code == 200
            assert http.get(f"/no/such?access_token={secret_token}").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    stderr = proc.captured_stderr  # type: ignore[attr-defined]
    for secret in (secret_token, ingest_secret, "wrong-token-123"):
        assert secret not in stderr
    records = [orjson.loads(line) for line in stderr.splitlines()]  # every line is JSON
    access = [r for r in records if r["logger"] == "trio_sync.access"]
    assert len(access) == 5
    first = access[0]
    assert (first["method"], first["path"], first["status"]) == (
        "GET",
        "/_matrix/client/v3/sync",
        200,
    )
    assert first["user"] == BOB and first["duration_ms"] >= 0
    assert access[2]["status"] == 401 and access[2]["user"] is None
    assert any(r["level"] == "debug" and "batch from http" in r["message"] for r in records)
    warned = [r for r in records if "does not exist yet" in r["message"]]
    assert len(warned) == 1 and str(missing_log) in warned[0]["message"]


def test_demo_removes_its_database_when_it_stops() -> None:
    with running("demo", "--listen", "127.0.0.1:0", ready=r"ingested into (\S+)") as (proc, match):
        workdir = Path(match.group(1))
        assert (workdir / "demo.db").exists()
        for line in proc.stdout:  # type: ignore[union-attr]
            if "Ctrl-C" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    assert not workdir.exists()
