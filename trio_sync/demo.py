"""A small demo community, fed through the real ingest path by ``trio-sync demo``."""

from __future__ import annotations

import random
from typing import Any

from .roomlog import RoomLog


def demo_community(
    server_name: str = "demo.example", seed: int = 7
) -> tuple[list[dict[str, Any]], list[str]]:
    """Messages for 3 users in 3 rooms: ≥100 events, an invite still pending and a leave.

    Returns ``(messages, users)``.
    """
    rng = random.Random(seed)
    log = RoomLog(server_name)
    alice, bob, carol = (f"@{n}:{server_name}" for n in ("alice", "bob", "carol"))
    general, random_room, ops = (f"!{n}:{server_name}" for n in ("general", "random", "ops"))
    out: list[dict[str, Any]] = []
    out += log.create_room(general, alice, "General")
    out += log.create_room(random_room, bob, "Random")
    out += log.create_room(ops, carol, "Ops")
    out.append(log.member(general, bob, "join", displayname="Bob"))
    out.append(log.member(general, carol, "join", displayname="Carol"))
    out.append(log.member(random_room, alice, "join", displayname="Alice"))
    out.append(log.member(random_room, carol, "join", displayname="Carol"))
    members = {general: [alice, bob, carol], random_room: [bob, alice, carol], ops: [carol]}
    lines = ["hello", "how's it going?", "lunch?", "ship it", "looks good to me", "+1", "on it"]
    for n in range(90):
        room = rng.choice([general, general, random_room])
        sender = rng.choice(members[room])
        out.append(log.message(room, sender, f"{rng.choice(lines)} (#{n})"))
    out.append(log.member(random_room, carol, "leave"))
    out.append(log.event(general, alice, "m.room.topic", {"topic": "Everything trio-sync"}, ""))
    out.append(log.member(ops, alice, "invite", sender=carol))
    out.append(log.message(ops, carol, "alice, join us when you can"))
    return out, [alice, bob, carol]
