"""One provider per stream. Each fills its part of a response inside one read snapshot.

A provider is an object with ``complete(conn, ctx, resp)`` (no ``since``) and
``incremental(conn, ctx, resp)`` (``ctx.since < p <= ctx.now``). The room events
(:class:`PduStream`) come first, and the others may look at the rooms it put in the
response (a room is in at most one of join/invite/leave). The others then run together
(:func:`trio_sync.storage.rounds.together`): round by round, in this order, their queries
sharing round trips; so none of them may depend on what another of them adds, and each
may only await its connection's queries. Adding a stream is adding a module here.
"""

from __future__ import annotations

from typing import Protocol

from ...storage import Conn
from ..response import SyncContext, SyncResponse
from .account_data import AccountDataStream
from .device_lists import DeviceListStream
from .invites import InviteStream
from .notifications import NotificationStream
from .pdu import PduStream
from .presence import PresenceStream
from .receipts import ReceiptStream
from .to_device import ToDeviceStream
from .typing import TypingStream


class StreamProvider(Protocol):
    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None: ...

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None: ...


PROVIDERS: tuple[StreamProvider, ...] = (
    PduStream(),
    InviteStream(),
    TypingStream(),
    ReceiptStream(),
    AccountDataStream(),
    NotificationStream(),
    PresenceStream(),
    ToDeviceStream(),
    DeviceListStream(),
)

__all__ = [
    "PROVIDERS",
    "AccountDataStream",
    "DeviceListStream",
    "InviteStream",
    "NotificationStream",
    "PduStream",
    "PresenceStream",
    "ReceiptStream",
    "StreamProvider",
    "ToDeviceStream",
    "TypingStream",
]
