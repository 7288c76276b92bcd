"""Routes that read rooms: ``/messages``, ``/context``, ``/event``, ``/members``,
``/joined_members`` and ``/joined_rooms``.

Each answer is one storage read (one snapshot), bounded by the notifier's current
position so that it never shows more than a ``/sync`` at that moment could.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Response, request

from ..errors import invalid_param
from ..filters import RoomEventFilter, parse_room_event_filter_json
from ..reads import members as m
from ..reads import messages as msg
from ..storage.accounts import Device
from ..sync.timeline import Viewer
from .common import json_response, room_id_param

if TYPE_CHECKING:
    from .app import TrioSyncApp

Authenticate = Callable[[], Awaitable[Device]]


def _filter() -> RoomEventFilter:
    text = request.args.get("filter")
    return parse_room_event_filter_json(text) if text else RoomEventFilter()


def _viewer(device: Device) -> Viewer:
    return Viewer(device.user_id, session_id=device.session_id, now_ms=int(time.time() * 1000))


def _membership_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in m.MEMBERSHIPS:
        raise invalid_param(f"{name} must be one of {', '.join(m.MEMBERSHIPS)}")
    return value


def add_room_routes(app: TrioSyncApp, prefix: str, authenticate: Authenticate) -> None:
    """Register the room read routes under ``prefix`` (``/_matrix/client/v3`` or ``r0``)."""
    service = app.service

    def now() -> int:
        return service.notifier.current.pdu

    @app.get(f"{prefix}/rooms/<room_id>/messages", endpoint=f"messages{prefix}")
    async def messages(room_id: str) -> Response:
        device = await authenticate()
        direction = request.args.get("dir")
        if direction not in ("b", "f"):
            raise invalid_param("dir must be 'b' or 'f'")
        start, to = request.args.get("from"), request.args.get("to")
        filt = _filter()
        page = msg.Page(
            backwards=direction == "b",
            start_token=start or None,
            start=msg.parse_place(start) if start else None,
            to=msg.parse_place(to) if to else None,
            limit=msg.parse_limit(request.args.get("limit"), 10),
            filter=filt,
        )
        body = await service.engine.read(
            msg.messages, _viewer(device), room_id_param(room_id), page, now()
        )
        return json_response(body)

    @app.get(f"{prefix}/rooms/<room_id>/context/<event_id>", endpoint=f"context{prefix}")
    async def context(room_id: str, event_id: str) -> Response:
        device = await authenticate()
        filt = _filter()
        limit = msg.parse_limit(request.args.get("limit"), 10)
        body = await service.engine.read(
            msg.context, _viewer(device), room_id_param(room_id), event_id, limit, filt, now()
        )
        return json_response(body)

    @app.get(f"{prefix}/rooms/<room_id>/event/<event_id>", endpoint=f"event{prefix}")
    async def event(room_id: str, event_id: str) -> Response:
        device = await authenticate()
        body = await service.engine.read(
            msg.event, _viewer(device), room_id_param(room_id), event_id, now()
        )
        return json_response(body)

    @app.get(f"{prefix}/rooms/<room_id>/members", endpoint=f"members{prefix}")
    async def members(room_id: str) -> Response:
        device = await authenticate()
        at_text = request.args.get("at")
        # ``at`` is a place between events (a next_batch or a prev_batch): the state
        # just before it.
        at = now() if not at_text else min(msg.parse_boundary(at_text) - 1, now())
        body = await service.engine.read(
            m.members,
            _viewer(device),
            room_id_param(room_id),
            at,
            _membership_arg("membership"),
            _membership_arg("not_membership"),
        )
        return json_response(body)

    @app.get(f"{prefix}/rooms/<room_id>/joined_members", endpoint=f"joined_members{prefix}")
    async def joined_members(room_id: str) -> Response:
        device = await authenticate()
        body = await service.engine.read(
            m.joined_members, device.user_id, room_id_param(room_id), now()
        )
        return json_response(body)

    @app.get(f"{prefix}/joined_rooms", endpoint=f"joined_rooms{prefix}")
    async def joined_rooms() -> Response:
        device = await authenticate()
        return json_response(await service.engine.read(m.joined_rooms, device.user_id))
