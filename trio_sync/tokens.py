"""Sync and pagination tokens.

``next_batch`` / ``since`` tokens are ``s<pdu>_<typing>_<receipt>_<invite>_<to_device>_
<account_data>_<device_list>_<notification>_<presence>``: one position per stream, each a
non-negative integer. Pagination tokens are ``t<depth>_<pdu>``. Parsing is strict: anything
else is a 400 ``M_INVALID_PARAM``, never a server error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from .errors import invalid_param

_MAX = (1 << 63) - 1
_STREAM_RE = re.compile(r"s([0-9]{1,19})(?:_([0-9]{1,19})){8}")
_TOPO_RE = re.compile(r"t(-?[0-9]{1,19})_([0-9]{1,19})")


@dataclass(frozen=True, slots=True, order=False)
class StreamToken:
    """A position in every stream at once; each field only ever grows."""

    pdu: int = 0
    typing: int = 0
    receipt: int = 0
    invite: int = 0
    to_device: int = 0
    account_data: int = 0
    device_list: int = 0
    notification: int = 0
    presence: int = 0

    STREAMS: ClassVar[tuple[str, ...]] = (
        "pdu",
        "typing",
        "receipt",
        "invite",
        "to_device",
        "account_data",
        "device_list",
        "notification",
        "presence",
    )

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, name)) for name in self.STREAMS)

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        """Parse a token this server issued; raise 400 ``M_INVALID_PARAM`` otherwise."""
        if not _STREAM_RE.fullmatch(text):
            raise invalid_param(f"Malformed sync token {text[:64]!r}")
        values = [int(part) for part in text[1:].split("_")]
        if any(v > _MAX for v in values):
            raise invalid_param("Sync token position out of range")
        return cls(*values)

    def is_after(self, other: StreamToken) -> bool:
        """True when any stream here is further on than in ``other``."""
        return any(getattr(self, f.name) > getattr(other, f.name) for f in fields(self))

    def union(self, other: StreamToken) -> StreamToken:
        """The per-stream maximum of both tokens."""
        return StreamToken(
            *(max(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))
        )

    def with_stream(self, stream: str, position: int) -> StreamToken:
        """This token with one stream moved to ``position``."""
        return replace(self, **{stream: position})


@dataclass(frozen=True, slots=True, order=True)
class TopologyToken:
    """A place between events in a room's topological order: ``(depth, pdu position)``.

    Paginating backwards from it yields events strictly before ``(depth, pdu)``;
    forwards yields events at or after it.
    """

    depth: int
    pdu: int

    def __str__(self) -> str:
        return f"t{self.depth}_{self.pdu}"

    @classmethod
    def parse(cls, text: str) -> TopologyToken:
        """Parse ``t<depth>_<pdu>``; raise 400 ``M_INVALID_PARAM`` otherwise."""
        match = _TOPO_RE.fullmatch(text)
        if not match:
            raise invalid_param(f"Malformed pagination token {text[:64]!r}")
        depth, pdu = int(match[1]), int(match[2])
        if abs(depth) > _MAX or pdu > _MAX:
            raise invalid_param("Pagination token position out of range")
        return cls(depth, pdu)
