"""Access tokens: from the ``Authorization: Bearer`` header or the ``access_token`` query
parameter — exactly one of them, given once."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import MatrixError


def token_from(authorizations: Sequence[str], query_tokens: Sequence[str]) -> str:
    """The request's access token; 401 ``M_MISSING_TOKEN`` when there is none, or more
    than one credential (two headers, a header and a parameter, two parameters): which
    one the client meant cannot be known, so none is used."""
    given = len(authorizations) + len(query_tokens)
    if given > 1:
        raise MatrixError(
            401,
            "M_MISSING_TOKEN",
            "Mixed credentials: give the access token once, in one Authorization header "
            "or one access_token parameter",
        )
    if authorizations:
        scheme, _, token = authorizations[0].partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        return token.strip()
    if not query_tokens or not query_tokens[0]:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    return query_tokens[0]
