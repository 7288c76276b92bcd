"""Configuration: one frozen dataclass, built once from defaults, a file, the environment
and the command line (later sources win), then passed explicitly."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_DATABASE = "sqlite:///trio-sync.db"
DEFAULT_LISTEN = "127.0.0.1:8008"
ENV_PREFIX = "TRIO_SYNC_"
AUTH_MODES = ("local", "homeserver-database", "whoami")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a trio-sync service needs to know.

    ``listen`` None means no HTTP server (embedding code serves ``service.app`` itself).
    """

    database: str = DEFAULT_DATABASE
    listen: str | None = DEFAULT_LISTEN
    server_name: str = "localhost"
    log: str | None = None
    ingest_secret: str | None = None
    graceful_timeout: float = 10.0
    keep_alive_timeout: float = 30.0
    batch_size: int = 500
    follow_poll_interval: float = 0.2
    #: The homeserver's own PostgreSQL database (Dendrite's), read only.
    homeserver_database: str | None = None
    #: The homeserver's client-server API base URL (``whoami`` auth, ``/versions``).
    homeserver_url: str | None = None
    homeserver_timeout: float = 10.0
    #: Who checks access tokens: ``local``, ``homeserver-database`` or ``whoami``.
    auth: str = "local"
    auth_cache_ttl: float = 60.0
    auth_negative_ttl: float = 5.0
    auth_cache_size: int = 100_000
    #: A NATS JetStream server the homeserver publishes its output streams to.
    jetstream: str | None = None
    #: Serve trio-sync's own write endpoints even when ``jetstream`` is set.
    local_writes: bool = False

    def check(self) -> None:
        """Raise ValueError (one line) for settings that cannot work together."""
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        if self.auth == "whoami" and not self.homeserver_url:
            raise ValueError("auth = whoami needs homeserver_url (--homeserver-url)")
        if self.auth == "homeserver-database" and not self.homeserver_database:
            raise ValueError(
                "auth = homeserver-database needs homeserver_database (--homeserver-database)"
            )

    @property
    def writes_local(self) -> bool:
        """Whether trio-sync accepts client writes (typing, receipts, account data,
        presence, to-device) itself; with ``jetstream`` they belong to the homeserver."""
        return self.jetstream is None or self.local_writes

    def with_overrides(self, values: Mapping[str, Any]) -> Config:
        """A copy with every non-None value of ``values`` that names a field applied."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None or key not in known:
                continue
            kind = type(getattr(self, key))
            if isinstance(value, str) and kind is bool:
                value = _boolean(key, value)
            elif isinstance(value, str) and kind in (int, float):
                value = kind(value)
            changes[key] = value
        return replace(self, **changes)


def _boolean(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{key} must be true or false, not {value!r}")


def from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``TRIO_SYNC_DATABASE`` → ``database`` and so on."""
    names = {f.name for f in fields(Config)}
    out = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in names:
                out[name] = value
    return out


def from_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file: top-level keys named like the fields (``listen = "..."``)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    names = {f.name for f in fields(Config)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    return data


def load_config(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Defaults, then the config file, then ``TRIO_SYNC_*``, then the command line."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    config = Config()
    if path:
        config = config.with_overrides(from_file(path))
    config = config.with_overrides(from_env(env))
    return config.with_overrides(cli or {})
