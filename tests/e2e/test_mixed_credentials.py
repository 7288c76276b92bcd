"""Mixed credentials are refused, on /sync (served straight from ASGI) and on the Quart
routes alike: two Authorization headers, a header and ?access_token=, two parameters."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, SYNC_PATH

PATHS = [SYNC_PATH, "/_matrix/client/r0/sync", "/_matrix/client/v3/joined_rooms"]


@pytest.mark.parametrize("path", PATHS)
async def test_mixed_credentials_are_refused(
    service: Service, http: httpx.AsyncClient, path: str
) -> None:
    token = await service.add_device(ALICE, "PHONE")
    other = await service.add_device(ALICE, "LAPTOP")
    bearer = ("Authorization", f"Bearer {token}")
    cases = [
        ([bearer, ("Authorization", f"Bearer {other}")], []),
        ([bearer, bearer], []),
        ([bearer], [("access_token", token)]),
        ([], [("access_token", token), ("access_token", other)]),
    ]
    for headers, params in cases:
        r = await http.get(path, headers=headers, params=[*params, ("timeout", "0")])
        assert r.status_code == 401, (headers, params, r.text)
        body = r.json()
        assert body["errcode"] == "M_MISSING_TOKEN"
        assert "Mixed credentials" in body["error"]
    # One credential, either way, still works.
    assert (await http.get(path, headers=[bearer], params={"timeout": "0"})).status_code == 200
    r = await http.get(path, params={"access_token": token, "timeout": "0"})
    assert r.status_code == 200
