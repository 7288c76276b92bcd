"""One provider per stream. Each fills its part of a response inside one read snapshot.

A provider is an object with ``complete(conn, ctx, resp)`` (no ``since``) and
``incremental(conn, ctx, resp)`` (``ctx.since < p <= ctx.now``). Providers run in order;
a later one may look at what an earlier one put in the response (a room is in at most
one of join/invite/leave). Adding a stream is adding a module here.
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
