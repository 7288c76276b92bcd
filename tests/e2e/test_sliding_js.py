"""A real client: matrix-js-sdk's ``SlidingSync`` (tests/js, run under node) drives a list
against trio-sync and sees its rooms, a live new event and an invite."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from trio_sync import Service

from .conftest import ALICE, BOB, SERVER
from .sliding_support import room_id, rooms_in_order

JS = Path(__file__).resolve().parents[1] / "js"
#: What starts the script's report lines on stdout.
MARK = b"@@ "


class Lines:
    """JSON lines read from a process's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.seen: list[dict[str, Any]] = []

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line (from now on) for which ``predicate`` holds; fail after 20 s."""
        with trio.fail_after(20):
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    if not line.startswith(MARK):
                        continue  # the SDK's own log lines
                    obj = json.loads(line[len(MARK) :])
                    self.seen.append(obj)
                    assert obj.get("kind") != "error", obj
                    if predicate(obj):
                        return obj
                chunk = await self._stream.receive_some()
                assert chunk, f"the client exited; it said: {self.seen}"
                self._buffer += chunk


async def test_matrix_js_sdk_sliding_sync_sees_rooms_live_events_and_invites(
    service: Service,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the matrix-js-sdk client test"
    if not (JS / "node_modules" / "matrix-js-sdk").is_dir():
        # First run in a checkout: install the pinned SDK from tests/js/package-lock.json.
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install matrix-js-sdk for this test"
        await trio.run_process([npm, "ci", "--no-audit", "--no-fund"], cwd=JS)
    log = await rooms_in_order(service, 3, BOB)
    token = await service.add_device(BOB, "JS")
    proc = await trio.lowlevel.open_process(
        [node, str(JS / "sliding_client.mjs"), service.addresses[0], token, BOB],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=JS,
    )
    assert proc.stdout is not None and proc.stdin is not None
    lines = Lines(proc.stdout)
    try:
        first = await lines.until(lambda o: o["kind"] == "complete")
        assert first["count"] == 3
        rooms = {o["roomId"]: o for o in lines.seen if o["kind"] == "room"}
        assert set(rooms) == {room_id(0), room_id(1), room_id(2)}
        assert rooms[room_id(2)]["name"] == "Room 2"
        assert rooms[room_id(2)]["initial"] is True
        assert rooms[room_id(2)]["timeline"][-1] == "hello 2"
        # A live event arrives through the long-poll.
        await service.ingest([log.message(room_id(0), ALICE, "live from alice")])
        live = await lines.until(
            lambda o: o["kind"] == "room" and "live from alice" in o["timeline"]
        )
        assert live["roomId"] == room_id(0)
        assert live["initial"] is False
        # An invite appears in the list.
        invite_room = f"!invite:{SERVER}"
        messages = log.create_room(invite_room, ALICE, "Come in")
        messages.append(log.member(invite_room, BOB, "invite", ALICE))
        await service.ingest(messages)
        invite = await lines.until(lambda o: o["kind"] == "room" and o["roomId"] == invite_room)
        assert invite["invite"] is True
        assert invite["membership"] == "invite"
        assert invite["name"] == "Come in"
        counted = await lines.until(lambda o: o["kind"] == "complete")
        assert counted["count"] == 4
    finally:
        await proc.stdin.aclose()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
