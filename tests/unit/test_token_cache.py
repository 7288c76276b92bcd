"""The shared token cache: expiry, bounds, and answers that predate a change."""

from __future__ import annotations

import trio
import trio.testing

from trio_sync.homeserver.token_cache import REJECTED, TokenCache
from trio_sync.storage.accounts import Device

ALICE = Device("@alice:example.org", "PHONE", None)


async def test_ttl_and_negative_ttl(autojump_clock: trio.testing.MockClock) -> None:
    cache = TokenCache(ttl=60, negative_ttl=5)
    cache.put("good", ALICE, cache.generation)
    cache.put("bad", None, cache.generation)
    assert cache.get("good") == ALICE and cache.get("bad") is REJECTED
    await trio.sleep(5.5)
    assert cache.get("good") == ALICE and cache.get("bad") is None
    await trio.sleep(60)
    assert cache.get("good") is None
    assert len(cache) == 0


async def test_without_ttl_only_clear_forgets(autojump_clock: trio.testing.MockClock) -> None:
    cache = TokenCache(ttl=None, negative_ttl=5)
    cache.put("good", ALICE, cache.generation)
    await trio.sleep(10**6)
    assert cache.get("good") == ALICE
    cache.clear()
    assert cache.get("good") is None


async def test_bounded_least_recently_used() -> None:
    cache = TokenCache(ttl=None, negative_ttl=5, size=3, negative_size=2)
    for n in range(3):
        cache.put(f"t{n}", ALICE, cache.generation)
    assert cache.get("t0") == ALICE  # t0 is now the most recently used
    cache.put("t3", ALICE, cache.generation)
    assert cache.get("t1") is None and cache.get("t0") == ALICE
    for n in range(100):
        cache.put(f"bad{n}", None, cache.generation)
    assert len(cache) == 3 + 2


async def test_an_answer_older_than_a_clear_is_not_kept() -> None:
    cache = TokenCache(ttl=None, negative_ttl=5)
    started = cache.generation
    cache.clear()  # e.g. the token was revoked while the lookup ran
    cache.put("good", ALICE, started)
    assert cache.get("good") is None


async def test_forget_drops_only_the_named_valid_tokens() -> None:
    cache = TokenCache(ttl=60, negative_ttl=5)
    for token in ("a", "b", "c"):
        cache.put(token, ALICE, cache.generation)
    cache.put("bad", None, cache.generation)
    assert sorted(cache.accepted()) == ["a", "b", "c"]  # rejections are not re-checked
    cache.forget({"b", "unknown"})
    assert cache.get("b") is None
    assert cache.get("a") == ALICE and cache.get("c") == ALICE
    assert cache.get("bad") is REJECTED
