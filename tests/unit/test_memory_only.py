"""Responses built from memory: when they apply, and the key-count cache."""

from __future__ import annotations

import pytest

from trio_sync.storage.accounts import Device
from trio_sync.sync.memory_only import (
    NO_STORAGE,
    KeyCountCache,
    StorageNeeded,
    only_typing_moved,
)
from trio_sync.sync.response import SyncResponse
from trio_sync.tokens import StreamToken

DEVICE = Device("@a:x", "A", None)


def test_only_typing_moved() -> None:
    since = StreamToken(pdu=3, typing=10, to_device=2)
    assert only_typing_moved(since, since.with_stream("typing", 11))
    assert only_typing_moved(since, since)
    for stream in StreamToken.STREAMS:
        if stream != "typing":
            assert not only_typing_moved(since, since.with_stream(stream, 99)), stream


def test_key_count_cache_is_valid_for_one_epoch() -> None:
    cache = KeyCountCache()
    assert cache.get(DEVICE, 0) is None
    resp = SyncResponse(StreamToken(), one_time_keys_count={"signed_curve25519": 5})
    cache.put(DEVICE, 0, resp)
    assert cache.get(DEVICE, 0) == ({"signed_curve25519": 5}, None)
    assert cache.get(DEVICE, 1) is None
    cache.put(Device("@b:x", "B", None), 1, SyncResponse(StreamToken()))
    assert cache.get(DEVICE, 1) is None  # the new epoch dropped the old entries
    assert cache.get(Device("@b:x", "B", None), 1) == (None, None)


async def test_no_storage_refuses_queries() -> None:
    with pytest.raises(StorageNeeded):
        await NO_STORAGE.fetch("SELECT 1")
    with pytest.raises(StorageNeeded):
        await NO_STORAGE.execute("DELETE FROM x")
