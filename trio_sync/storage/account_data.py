"""Reads of account data that other features depend on."""

from __future__ import annotations

import orjson

from .engine import Conn

IGNORED_USER_LIST = "m.ignored_user_list"


async def ignored_users(conn: Conn, user_id: str) -> frozenset[str]:
    """The users ``user_id`` ignores (``m.ignored_user_list``'s ``ignored_users`` keys)."""
    content = await conn.fetchval(
        "SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' AND type = $2",
        user_id,
        IGNORED_USER_LIST,
    )
    if content is None:
        return frozenset()
    try:
        ignored = orjson.loads(content).get("ignored_users")
    except (orjson.JSONDecodeError, AttributeError):
        return frozenset()
    if not isinstance(ignored, dict):
        return frozenset()
    return frozenset(u for u in ignored if isinstance(u, str) and u != user_id)
