"""Access tokens: from the ``Authorization: Bearer`` header or the ``access_token`` query
parameter, looked up in storage."""

from __future__ import annotations

from ..errors import MatrixError
from ..storage import Engine
from ..storage.accounts import Device, device_for_token
from .params import storable


def token_from(authorization: str | None, query_token: str | None) -> str:
    """The request's access token; 401 ``M_MISSING_TOKEN`` when there is none."""
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        return token.strip()
    if not query_token:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    return query_token


async def authenticate(engine: Engine, token: str) -> Device:
    """The device ``token`` belongs to; 401 ``M_UNKNOWN_TOKEN`` if none. A checkpoint."""
    # A token no backend could store (a NUL, a lone surrogate) is unknown without a look.
    device = await engine.read_one(device_for_token, token) if storable(token) else None
    if device is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token", soft_logout=False)
    return device
