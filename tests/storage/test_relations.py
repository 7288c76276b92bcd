"""The relations index as ingest keeps it, on both backends."""

from __future__ import annotations

from typing import Any

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, Engine
from trio_sync.storage.relations import parents_with_children
from trio_sync.storage.rooms import newest_pages, newest_pages_with_parents

from .support import (
    ALICE,
    BOB,
    OTHER_ROOM,
    ROOM,
    Message,
    event_id_of,
    ingest,
    old_room_event,
    pdu_of,
    purge_room,
    query,
    redacted_event,
    redaction,
)


def related(log: RoomLog, room_id: str, rel: Any, **content: Any) -> Message:
    return log.event(
        room_id, ALICE, "m.room.message", {"body": "x", "m.relates_to": rel, **content}
    )


async def rows(engine: Engine) -> list[tuple[Any, ...]]:
    return await query(
        engine,
        "SELECT event_id, room_id, parent_id, rel_type, event_type, sender, new_content "
        "FROM relations ORDER BY pos",
    )


async def test_every_rel_type_is_indexed_in_one_batch_or_one_by_one(engine: Engine) -> None:
    log = RoomLog()
    created = log.create_room(ROOM, ALICE)
    (root,) = [log.message(ROOM, ALICE, "root")]
    root_id = event_id_of(root)
    kinds = [
        related(log, ROOM, {"rel_type": "m.thread", "event_id": root_id}),
        related(
            log,
            ROOM,
            {"rel_type": "m.replace", "event_id": root_id},
            **{"m.new_content": {"body": "y"}},
        ),
        related(log, ROOM, {"rel_type": "m.reference", "event_id": root_id}),
        related(log, ROOM, {"rel_type": "org.example.custom", "event_id": root_id}),
    ]
    # The batch path (several plain events at once) and the one-event path.
    await ingest(engine, [*created, root, *kinds[:2]])
    for message in kinds[2:]:
        await ingest(engine, [message])
    assert await rows(engine) == [
        (event_id_of(m), ROOM, root_id, t, "m.room.message", ALICE, n)
        for m, t, n in zip(
            kinds,
            ["m.thread", "m.replace", "m.reference", "org.example.custom"],
            [0, 1, 0, 0],
            strict=True,
        )
    ]
    # Delivered again: nothing doubles.
    await ingest(engine, [*kinds])
    assert len(await rows(engine)) == 4


async def test_malformed_relations_are_not_indexed(engine: Engine) -> None:
    log = RoomLog()
    await ingest(engine, log.create_room(ROOM, ALICE))
    (root,) = await ingest_ids(engine, [log.message(ROOM, ALICE, "root")])
    bad = [
        related(log, ROOM, "not an object"),
        related(log, ROOM, {"rel_type": "m.thread"}),
        related(log, ROOM, {"event_id": root}),
        related(log, ROOM, {"rel_type": 5, "event_id": root}),
        related(log, ROOM, {"rel_type": "m.thread", "event_id": ""}),
        # A reply alone (m.in_reply_to) is no rel_type relation.
        related(log, ROOM, {"m.in_reply_to": {"event_id": root}}),
    ]
    applied = await ingest(engine, bad)
    assert applied.rejected == 0 and applied.accepted == len(bad)
    assert await rows(engine) == []


async def ingest_ids(engine: Engine, messages: list[Message]) -> list[str]:
    await ingest(engine, messages)
    return [event_id_of(m) for m in messages]


async def test_backfilled_events_are_indexed(engine: Engine) -> None:
    log = RoomLog()
    await ingest(engine, log.create_room(ROOM, ALICE))
    (root,) = await ingest_ids(engine, [log.message(ROOM, ALICE, "root")])
    old = related(log, ROOM, {"rel_type": "m.thread", "event_id": root})
    await ingest(engine, [old_room_event(pdu_of(old))])
    assert [r[0] for r in await rows(engine)] == [event_id_of(old)]


async def test_redaction_drops_the_relation_and_purge_the_room(engine: Engine) -> None:
    log = RoomLog()
    await ingest(engine, log.create_room(ROOM, ALICE) + log.create_room(OTHER_ROOM, BOB))
    (root,) = await ingest_ids(engine, [log.message(ROOM, ALICE, "root")])
    (other_root,) = await ingest_ids(engine, [log.message(OTHER_ROOM, BOB, "root")])
    kept, gone = await ingest_ids(
        engine,
        [
            related(log, ROOM, {"rel_type": "m.thread", "event_id": root}),
            related(log, ROOM, {"rel_type": "m.thread", "event_id": root}),
        ],
    )
    (elsewhere,) = await ingest_ids(
        engine, [related(log, OTHER_ROOM, {"rel_type": "m.reference", "event_id": other_root})]
    )
    because = redaction(log, ROOM, ALICE, gone)
    await ingest(engine, [because, redacted_event(gone, pdu_of(because))])
    assert [r[0] for r in await rows(engine)] == [kept, elsewhere]
    await ingest(engine, [purge_room(ROOM)])
    assert [r[0] for r in await rows(engine)] == [elsewhere]


async def test_first_pages_say_which_events_have_children_to_bundle(engine: Engine) -> None:
    """The pages of several rooms come with which of their events have a child of a
    bundled relation type (a thread reply, an edit, a reference; not a custom type) at
    the position asked for, the same as the lookup by event ID answers."""
    log = RoomLog()
    setup = [*log.create_room(ROOM, ALICE), *log.create_room(OTHER_ROOM, BOB)]
    thread, edited, referenced, custom, plain = (
        log.message(room, ALICE, name)
        for room, name in [
            (ROOM, "thread"),
            (ROOM, "edited"),
            (OTHER_ROOM, "referenced"),
            (OTHER_ROOM, "custom"),
            (ROOM, "plain"),
        ]
    )
    children = [
        related(log, ROOM, {"rel_type": "m.thread", "event_id": event_id_of(thread)}),
        related(
            log,
            ROOM,
            {"rel_type": "m.replace", "event_id": event_id_of(edited)},
            **{"m.new_content": {"body": "y"}},
        ),
        related(log, OTHER_ROOM, {"rel_type": "m.reference", "event_id": event_id_of(referenced)}),
        related(log, OTHER_ROOM, {"rel_type": "org.example", "event_id": event_id_of(custom)}),
    ]
    await ingest(engine, [*setup, thread, edited, referenced, custom, plain])
    before_children = len(setup) + 5
    await ingest(engine, children)
    upto = before_children + len(children)
    rooms = [ROOM, OTHER_ROOM]

    async def read(conn: Conn, children_upto: int) -> tuple[Any, set[str], Any, set[str]]:
        pages, parents = await newest_pages_with_parents(
            conn, rooms, 0, upto, 20, "client", children_upto
        )
        ids = [e.event_id for page in pages.values() for e in page]
        by_id = await parents_with_children(conn, rooms, ids, children_upto)
        return pages, parents, await newest_pages(conn, rooms, 0, upto, 20), by_id

    pages, parents, plain_pages, by_id = await engine.read(read, upto)
    assert pages == plain_pages
    assert parents == by_id == {event_id_of(m) for m in (thread, edited, referenced)}
    pages, parents, _, by_id = await engine.read(read, before_children)
    assert parents == by_id == set()
