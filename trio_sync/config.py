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
    keep_alive_max_requests: int = 100_000
    batch_size: int = 500
    follow_poll_interval: float = 0.2

    def with_overrides(self, values: Mapping[str, Any]) -> Config:
        """A copy with every non-None value of ``values`` that names a field applied."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None or key not in known:
                continue
            kind = type(getattr(self, key))
            if isinstance(value, str) and kind in (int, float):
                value = kind(value)
            changes[key] = value
        return replace(self, **changes)


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
