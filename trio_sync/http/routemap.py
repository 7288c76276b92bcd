"""What trio-sync answers beside a homeserver, and what belongs to the homeserver.

:data:`READ_ROUTES` is the one list of client-API paths a reverse proxy sends to
trio-sync; everything else goes to the homeserver. ``deploy/nginx.conf`` and
``deploy/Caddyfile`` carry :func:`proxy_regex` verbatim (a test checks they match it and
runs nginx with the configuration). Paths shared by a read and a write (account data,
presence) go to the homeserver whole, since a proxy routes by path.

:data:`HOMESERVER_WRITES` are trio-sync's own write endpoints: served when it is the
only writer, answered 404 ``M_UNRECOGNIZED`` when the homeserver owns writes (a
JetStream source) unless ``local_writes`` is set.
"""

from __future__ import annotations

#: (path regular expression, what it is). Versions ``v3`` and ``r0`` alike.
READ_ROUTES: tuple[tuple[str, str], ...] = (
    (r"/_matrix/client/versions", "spec versions, merged with the homeserver's"),
    (r"/_matrix/client/(?:v3|r0)/sync", "sync"),
    (r"/_matrix/client/(?:v3|r0)/user/[^/]+/filter(?:/[^/]+)?", "filters (create and read)"),
    (r"/_matrix/client/(?:v3|r0)/rooms/[^/]+/messages", "room history"),
    (r"/_matrix/client/(?:v3|r0)/rooms/[^/]+/context/[^/]+", "event context"),
    (r"/_matrix/client/(?:v3|r0)/rooms/[^/]+/event/[^/]+", "one event"),
    (r"/_matrix/client/(?:v3|r0)/rooms/[^/]+/(?:joined_)?members", "room members"),
    (r"/_matrix/client/(?:v3|r0)/joined_rooms", "joined rooms"),
    (r"/_matrix/client/(?:v3|r0)/keys/changes", "device list changes"),
    (r"/_matrix/client/v1/rooms/[^/]+/relations/.+", "relations"),
    (r"/_matrix/client/v1/rooms/[^/]+/threads", "threads"),
    (r"/_matrix/client/unstable/org\.matrix\.simplified_msc3575/sync", "sliding sync"),
)

#: Base names of the write endpoints (the views' endpoint names without their prefix).
HOMESERVER_WRITES = frozenset(
    {
        "ad_put",
        "rad_put",
        "tag_put",
        "tag_delete",
        "typing",
        "receipt",
        "read_markers",
        "presence_put",
        "to_device",
    }
)


def proxy_regex() -> str:
    """One anchored regular expression matching exactly the paths of :data:`READ_ROUTES`
    (PCRE for nginx and RE2 for Caddy accept it alike)."""
    return "^(?:" + "|".join(pattern for pattern, _ in READ_ROUTES) + ")$"


def is_homeserver_write(endpoint: str | None) -> bool:
    """Whether a view's endpoint name (``typing/_matrix/client/v3`` …) is a write that
    belongs to the homeserver when it owns writes."""
    if endpoint is None:
        return False
    return endpoint.split("/", 1)[0] in HOMESERVER_WRITES
