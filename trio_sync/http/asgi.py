"""ASGI wrappers around the Quart-Trio app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Scope keys set while a request is handled: the matched route template and the
#: authenticated user (read by the request metrics and the access log).
ROUTE_KEY = "trio_sync.route"
USER_KEY = "trio_sync.user"


def shield_final_send(app: ASGIApp) -> ASGIApp:
    """Shield the last body send of every response from cancellation.

    Quart-Trio cancels a request's nursery as soon as the server reports the client
    gone. Hypercorn reports that from inside the final body send when it closes a
    ``Connection: close`` socket, so the send is cancelled half way and the socket is
    never closed; idle keep-alive connections likewise never time out. Shielding that
    one send lets the server finish closing.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_shielded(message: Message) -> None:
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await app(scope, receive, send_shielded)

    return wrapped
