"""Applying the per-user stream messages (account data, receipts, to-device, key changes,
key counts, unread counts, presence, typing) on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Engine
from trio_sync.storage.accounts import add_device

from .support import ALICE, BOB, ROOM, event_id_of, ingest, query, rejects, stream_position


def msg(kind: str, **body: Any) -> dict[str, Any]:
    return {"type": kind, kind: body}


def to_device(device: str = "B1", **extra: Any) -> dict[str, Any]:
    return msg(
        "send_to_device",
        user_id=BOB,
        device_id=device,
        sender=ALICE,
        type="m.test",
        content={"k": 1},
        **extra,
    )


async def test_account_data_is_one_row_per_key_at_its_latest_position(engine: Engine) -> None:
    applied = await ingest(
        engine,
        [
            msg("client_data", user_id=ALICE, type="m.direct", content={"n": 1}),
            msg("client_data", user_id=ALICE, room_id=ROOM, type="m.tag", content={"tags": {}}),
            msg("client_data", user_id=ALICE, type="m.direct", content={"n": 2}),
        ],
    )
    assert (applied.accepted, applied.rejected) == (3, 0)
    assert applied.users == {ALICE} and applied.token.account_data == 3
    rows = await query(engine, "SELECT room_id, type, content, pos FROM account_data ORDER BY pos")
    assert rows == [(ROOM, "m.tag", '{"tags":{}}', 2), ("", "m.direct", '{"n":2}', 3)]
    assert await stream_position(engine, "account_data") == 3


@pytest.mark.parametrize(
    "bad",
    [
        msg("client_data", user_id="alice", type="m.direct", content={}),
        msg("client_data", user_id=ALICE, type="m.direct", content=[]),
        msg("typing", event={"room_id": ROOM, "user_id": ALICE, "typing": "yes"}),
        msg("typing", event={"room_id": ROOM, "user_id": ALICE, "typing": True}, ExpireTime=5),
        msg("receipt", user_id=ALICE, room_id=ROOM, event_id="$e", type="m.seen"),
        msg("receipt", user_id=ALICE, room_id="room", event_id="$e", type="m.read"),
        msg("send_to_device", user_id=BOB, device_id="D", sender=ALICE, type="t", content=1),
        msg("key_change", Type=0),
        msg("one_time_keys", user_id=ALICE, device_id="A", one_time_key_counts={"x": -1}),
        msg("notification_data", user_id=ALICE, room_id=ROOM, unread_notification_count="2"),
        msg("presence", user_id=ALICE, presence="busy"),
        {"type": "presence"},
    ],
)
async def test_bad_messages_are_recorded_and_skipped(engine: Engine, bad: dict[str, Any]) -> None:
    good = msg("client_data", user_id=ALICE, type="m.direct", content={})
    applied = await ingest(engine, [bad, good])
    assert (applied.accepted, applied.rejected) == (1, 1)
    assert len(await rejects(engine)) == 1
    assert await stream_position(engine, "account_data") == 1


async def test_receipts_keep_the_latest_per_user_type_and_thread(engine: Engine) -> None:
    applied = await ingest(
        engine,
        [
            msg("receipt", user_id=ALICE, room_id=ROOM, event_id="$1", type="m.read", timestamp=5),
            msg("receipt", user_id=ALICE, room_id=ROOM, event_id="$2", type="m.read", timestamp=6),
            msg(
                "receipt",
                user_id=ALICE,
                room_id=ROOM,
                event_id="$2",
                type="m.read",
                thread_id="main",
            ),
            msg("receipt", user_id=BOB, room_id=ROOM, event_id="$1", type="m.read.private"),
        ],
    )
    assert applied.token.receipt == 4
    assert applied.ephemeral_rooms == {ROOM} and applied.users == {BOB}
    rows = await query(
        engine,
        "SELECT user_id, receipt_type, thread_id, event_id, pos FROM receipts ORDER BY pos",
    )
    assert rows == [
        (ALICE, "m.read", "", "$2", 2),
        (ALICE, "m.read", "main", "$2", 3),
        (BOB, "m.read.private", "", "$1", 4),
    ]


async def test_to_device_wildcard_and_transactions(engine: Engine) -> None:
    for device in ("B1", "B2"):
        await engine.write(add_device, BOB, device, f"token-{device}")
    applied = await ingest(
        engine,
        [
            to_device("*", sender_device="A", txn_id="t1"),
            to_device("B1", sender_device="A", txn_id="t2"),
            to_device("B1", sender_device="A", txn_id="t2"),  # a retry
            to_device("B1"),  # no transaction: never deduplicated
            to_device("B1"),
        ],
    )
    assert (applied.accepted, applied.duplicates) == (4, 1)
    assert applied.devices == {(BOB, "B1"), (BOB, "B2")}
    rows = await query(engine, "SELECT pos, device_id FROM device_inbox ORDER BY pos")
    assert rows == [(1, "B1"), (2, "B2"), (3, "B1"), (4, "B1"), (5, "B1")]
    again = await ingest(engine, [to_device("*", sender_device="A", txn_id="t1")])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert await stream_position(engine, "to_device") == 5


async def test_key_changes_and_key_counts(engine: Engine) -> None:
    keys = {"user_id": ALICE, "device_id": "A"}
    signing = {"signing_keys": {"user_id": BOB}}
    applied = await ingest(
        engine,
        [
            msg("key_change", DeviceKeys=keys),
            msg("key_change", Type=1, CrossSigningKeyUpdate=signing),
            msg("key_change", DeviceKeys=keys),
            msg(
                "one_time_keys",
                user_id=ALICE,
                device_id="A",
                one_time_key_counts={"signed_curve25519": 3},
            ),
        ],
    )
    assert applied.shared == {ALICE, BOB} and applied.token.device_list == 3
    assert sorted(await query(engine, "SELECT user_id, pos FROM key_changes")) == [
        (ALICE, 3),
        (BOB, 2),
    ]
    counts = await query(
        engine, "SELECT one_time_key_counts, fallback_key_types FROM device_key_counts"
    )
    assert counts == [('{"signed_curve25519":3}', "[]")]


async def test_presence_combines_devices_and_moves_only_on_change(engine: Engine) -> None:
    def device(device_id: str, state: str) -> dict[str, Any]:
        return msg("presence", user_id=ALICE, device_id=device_id, presence=state)

    async def seen() -> tuple[str, int]:
        rows = await query(engine, "SELECT presence, pos FROM presence WHERE user_id = $1", ALICE)
        return str(rows[0][0]), int(rows[0][1])

    await ingest(engine, [device("PHONE", "online")])
    assert await seen() == ("online", 1)
    applied = await ingest(engine, [device("PHONE", "online"), device("LAPTOP", "offline")])
    assert applied.shared == set() and await seen() == ("online", 1)
    await ingest(engine, [device("PHONE", "unavailable")])
    assert await seen() == ("unavailable", 2)
    await ingest(engine, [device("PHONE", "offline")])
    assert await seen() == ("offline", 3)
    # The homeserver's own (combined) presence, with a status message.
    applied = await ingest(
        engine, [msg("presence", user_id=ALICE, presence="online", status_msg="hi")]
    )
    assert applied.shared == {ALICE}
    rows = await query(engine, "SELECT presence, status_msg, currently_active FROM presence")
    assert rows == [("online", "hi", 1)]


async def test_own_read_receipt_at_the_newest_event_clears_unread_counts(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    first, last = log.message(ROOM, BOB, "1"), log.message(ROOM, BOB, "2")

    def counts(n: int, thread: str | None = None) -> dict[str, Any]:
        extra = {} if thread is None else {"thread_id": thread}
        return msg(
            "notification_data",
            user_id=ALICE,
            room_id=ROOM,
            unread_notification_count=n,
            unread_highlight_count=1,
            **extra,
        )

    def read(event: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return msg(
            "receipt",
            user_id=ALICE,
            room_id=ROOM,
            event_id=event_id_of(event),
            type="m.read",
            **extra,
        )

    applied = await ingest(engine, [*setup, first, last, counts(2), counts(4, "$t")])
    assert applied.users == {ALICE} and applied.token.notification == 2

    async def unread() -> list[tuple[Any, ...]]:
        return await query(
            engine,
            "SELECT thread_id, notification_count, highlight_count FROM unread_counts "
            "ORDER BY thread_id",
        )

    await ingest(engine, [read(first)])
    assert await unread() == [("", 2, 1), ("$t", 4, 1)]
    applied = await ingest(engine, [read(last, thread_id="main")])
    assert await unread() == [("", 0, 0), ("$t", 4, 1)]
    assert applied.token.notification == 3
    await ingest(engine, [read(last)])
    assert await unread() == [("", 0, 0), ("$t", 0, 0)]
    assert await stream_position(engine, "notification") == 4


async def test_typing_is_not_stored_but_handed_on(engine: Engine) -> None:
    event = {"type": "m.typing", "room_id": ROOM, "user_id": ALICE, "typing": True}
    applied = await ingest(
        engine, [msg("typing", event=event, ExpireTime="2999-01-01T00:00:00.123456789Z")]
    )
    assert applied.accepted == 1 and len(applied.typing) == 1
    assert applied.typing[0].expire_ts == 32472144000123
    assert await stream_position(engine, "typing") == 0
