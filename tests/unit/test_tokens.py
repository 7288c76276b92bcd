from __future__ import annotations

import pytest

from trio_sync.errors import MatrixError
from trio_sync.tokens import StreamToken, TopologyToken


def test_stream_token_round_trips() -> None:
    token = StreamToken(pdu=15, typing=2, receipt=3, invite=4, to_device=5, presence=9)
    assert str(token) == "s15_2_3_4_5_0_0_0_9"
    assert StreamToken.parse(str(token)) == token


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "abc",
        "s1",
        "s1_2",
        "s1_2_3_4_5_6_7_8",
        "s1_2_3_4_5_6_7_8_9_10",
        "s-1_0_0_0_0_0_0_0_0",
        "t1_2",
        "s1_0_0_0_0_0_0_0_0 ",
        "s99999999999999999999_0_0_0_0_0_0_0_0",
        "s1.5_0_0_0_0_0_0_0_0",
        "s\u0663_0_0_0_0_0_0_0_0",
    ],
)
def test_malformed_stream_tokens_are_400_invalid_param(text: str) -> None:
    with pytest.raises(MatrixError) as info:
        StreamToken.parse(text)
    assert info.value.status == 400
    assert info.value.errcode == "M_INVALID_PARAM"


def test_is_after_compares_every_stream() -> None:
    base = StreamToken(pdu=5, invite=2)
    assert StreamToken(pdu=6, invite=2).is_after(base)
    assert StreamToken(pdu=5, invite=3).is_after(base)
    assert not StreamToken(pdu=5, invite=2).is_after(base)
    assert not StreamToken(pdu=4, invite=9).is_after(StreamToken(pdu=5, invite=9))


def test_union_never_moves_a_stream_backwards() -> None:
    a = StreamToken(pdu=9, invite=1)
    b = StreamToken(pdu=3, invite=7, typing=2)
    assert a.union(b) == StreamToken(pdu=9, invite=7, typing=2)


def test_topology_token_round_trips_and_orders() -> None:
    token = TopologyToken(12, 345)
    assert str(token) == "t12_345"
    assert TopologyToken.parse("t12_345") == token
    assert TopologyToken(12, 345) < TopologyToken(12, 346) < TopologyToken(13, 1)
    with pytest.raises(MatrixError):
        TopologyToken.parse("s12_345")
