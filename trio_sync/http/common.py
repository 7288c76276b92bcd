"""What every Quart view shares: JSON bodies, authentication, ownership and membership
checks, and submitting a client's write through the ingest path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request

from ..errors import MatrixError, bad_json, forbidden, not_json
from ..ingest.apply import Applied
from ..ingest.messages import BadMessage, parse_message
from ..storage.accounts import Device
from . import params
from .asgi import USER_KEY, Scope
from .auth import token_from

if TYPE_CHECKING:
    from ..service import Service

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


def json_response(body: Any, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status=status, content_type="application/json")


def too_large(limit: int) -> MatrixError:
    """413 ``M_TOO_LARGE``: a request body over ``limit`` bytes."""
    return MatrixError(413, "M_TOO_LARGE", f"Request body over {limit} bytes")


async def request_body(limit: int | None = None) -> bytes:
    """The request body. Quart stops reading it past the service's ``max_request_body``
    (413, also for chunked bodies); ``limit`` is a tighter bound of the route's own,
    checked against the declared length before anything is read."""
    if limit is not None and (request.content_length or 0) > limit:
        raise too_large(limit)
    data = await request.get_data(as_text=False)
    raw = data if isinstance(data, bytes) else data.encode()
    if limit is not None and len(raw) > limit:
        raise too_large(limit)
    return raw


async def request_json(limit: int | None = None) -> Any:
    """The request body as JSON; 400 ``M_NOT_JSON`` if it is not JSON (413 over
    ``limit``)."""
    raw = await request_body(limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_json() from None


async def request_object(*, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; 400 ``M_NOT_JSON`` / ``M_BAD_JSON`` otherwise.

    With ``empty_ok``, an empty body counts as ``{}``.
    """
    if empty_ok and not (await request_body()).strip():
        return {}
    body = await request_json()
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object.")
    return body


async def authenticate(service: Service) -> Device:
    """The device of the request's access token; 401 when there is none or it is unknown."""
    token = token_from(
        request.headers.getlist("Authorization"), request.args.getlist("access_token")
    )
    device = await service.auth.authenticate(token)
    scope: Scope = request.scope  # type: ignore[assignment]
    scope[USER_KEY] = device.user_id
    return device


def own_user(device: Device, user_id: str, what: str) -> None:
    """403 ``M_FORBIDDEN`` unless ``user_id`` is the requester's own."""
    if device.user_id != user_id:
        raise forbidden(f"Cannot {what} for other users.")


def room_id_param(room_id: str) -> str:
    """A room ID from the path; 400 ``M_INVALID_PARAM`` if it is not one."""
    return params.room_id(room_id)


def user_id_param(user_id: str) -> str:
    """A user ID from the path; 400 ``M_INVALID_PARAM`` if it is not one."""
    return params.user_id(user_id)


def require_joined(service: Service, device: Device, room_id: str) -> None:
    """403 ``M_FORBIDDEN`` unless the requester is joined to ``room_id`` now."""
    if not service.notifier.is_joined(room_id_param(room_id), device.user_id):
        raise forbidden(f"You are not joined to {room_id[:80]}.")


async def submit(service: Service, messages: Sequence[dict[str, Any]]) -> Applied:
    """Apply log messages built from a client's request, through the single ingest task.

    Each is checked with the log parser first (400 ``M_BAD_JSON`` saying why), so a
    request that would be rejected writes nothing. Returns once the batch is committed
    and the clients that must see it have been woken.
    """
    for message in messages:
        try:
            parse_message(orjson.dumps(message))
        except BadMessage as exc:
            raise bad_json(str(exc)) from None
    if not messages:
        return Applied()
    return await service.client_write(messages)
