from __future__ import annotations

import pytest

from trio_sync.errors import MatrixError
from trio_sync.sync.request import MAX_TIMEOUT_MS, parse_sync_request
from trio_sync.tokens import StreamToken


def test_defaults() -> None:
    req = parse_sync_request({})
    assert req.since is None
    assert req.timeout_ms == 0
    assert not req.full_state
    assert req.set_presence == "online"


def test_all_parameters() -> None:
    req = parse_sync_request(
        {
            "since": "s3_0_0_1_0_0_0_0_0",
            "timeout": "30000",
            "full_state": "true",
            "set_presence": "unavailable",
            "filter": "0",
        }
    )
    assert req.since == StreamToken(pdu=3, invite=1)
    assert req.timeout_ms == 30000
    assert req.full_state
    assert req.set_presence == "unavailable"
    assert req.filter == "0"


def test_huge_timeout_is_capped() -> None:
    assert parse_sync_request({"timeout": "99999999999"}).timeout_ms == MAX_TIMEOUT_MS


@pytest.mark.parametrize(
    "args",
    [
        {"timeout": "-1"},
        {"timeout": "soon"},
        {"timeout": "1.5"},
        {"timeout": "9" * 40},
        {"timeout": "\u00b2"},
        {"timeout": "\u0663"},
        {"full_state": "yes"},
        {"set_presence": "busy"},
        {"since": "nonsense"},
    ],
)
def test_bad_parameters_are_400(args: dict[str, str]) -> None:
    with pytest.raises(MatrixError) as info:
        parse_sync_request(args)
    assert info.value.status == 400
    assert info.value.errcode == "M_INVALID_PARAM"
