"""What belongs to the homeserver: its database (read-only lookups) and token checks."""

from __future__ import annotations

from .database import (
    HomeserverDatabase,
    device_for_access_token,
    open_homeserver_database,
    open_optional_homeserver_database,
)

__all__ = [
    "HomeserverDatabase",
    "device_for_access_token",
    "open_homeserver_database",
    "open_optional_homeserver_database",
]
