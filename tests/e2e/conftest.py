"""Helpers shared by the end-to-end tests: /sync over HTTP, event lookups, waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio

from trio_sync import Service

from ..conftest import nio_accepts

SERVER = "example.org"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
CAROL = f"@carol:{SERVER}"

SYNC_PATH = "/_matrix/client/v3/sync"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def encode_params(params: dict[str, Any]) -> dict[str, str]:
    """Query parameters as strings: dicts become JSON, bools ``true``/``false``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, dict):
            out[key] = orjson.dumps(value).decode()
        else:
            out[key] = str(value)
    return out


async def sync(http: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    """GET /sync; assert 200 and that matrix-nio accepts the body; return the body."""
    r = await http.get(SYNC_PATH, params=encode_params(params), headers=auth(token))
    assert r.status_code == 200, r.text
    # matrix-nio mutates what it parses (it pops the content of invite_state events):
    # give it its own copy.
    nio_accepts(r.json())
    body: dict[str, Any] = r.json()
    return body


def event_id(message: dict[str, Any]) -> str:
    """The event ID of a RoomLog ``new_room_event`` message."""
    return str(message["new_room_event"]["event"]["_event_id"])


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def room_section(body: dict[str, Any], kind: str, room_id: str) -> dict[str, Any]:
    section: dict[str, Any] = body["rooms"][kind][room_id]
    return section


def rooms_of(body: dict[str, Any], kind: str) -> set[str]:
    return set(body.get("rooms", {}).get(kind, {}))


def timeline_ids(body: dict[str, Any], kind: str, room_id: str) -> list[str]:
    return ids(room_section(body, kind, room_id)["timeline"]["events"])


def state_ids(body: dict[str, Any], kind: str, room_id: str) -> list[str]:
    return ids(room_section(body, kind, room_id)["state"]["events"])


def state_keys(body: dict[str, Any], kind: str, room_id: str) -> set[tuple[str, str]]:
    events = room_section(body, kind, room_id)["state"]["events"]
    return {(e["type"], e["state_key"]) for e in events}


def token_fields(token: str) -> list[int]:
    """The nine stream positions of an ``s…`` sync token."""
    assert token.startswith("s")
    return [int(p) for p in token[1:].split("_")]


def not_before(token: str, since: str) -> bool:
    """True when every stream position of ``token`` is at or after ``since``'s."""
    return all(a >= b for a, b in zip(token_fields(token), token_fields(since), strict=True))


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (every 5 ms) until it holds; fail after 5 seconds."""
    with trio.fail_after(5):
        while True:
            if predicate():
                return
            await trio.sleep(0.005)


def host_port(service: Service) -> tuple[str, int]:
    url = urlsplit(service.addresses[0])
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


#: Fields that grow between two requests: ``unsigned.age`` and presence's ``last_active_ago``.
_AGES = {"unsigned": "age", "content": "last_active_ago"}


def without_age(body: Any) -> Any:
    """``body`` without the ages that differ between two requests (see :data:`_AGES`)."""
    if isinstance(body, dict):
        return {
            k: (
                {ik: iv for ik, iv in v.items() if ik != _AGES[k]}
                if k in _AGES and isinstance(v, dict)
                else without_age(v)
            )
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [without_age(v) for v in body]
    return body
