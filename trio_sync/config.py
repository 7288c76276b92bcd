"""Configuration: one frozen dataclass, built once from defaults, a file, the environment
and the command line (later sources win), then passed explicitly."""

from __future__ import annotations

import os
import re
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
    keep_alive_max_requests: int = 100_000
    batch_size: int = 500
    follow_poll_interval: float = 0.2
    #: The largest request body accepted, in bytes (413 ``M_TOO_LARGE`` above it).
    max_request_body: int = 8 * 1024 * 1024
    access_log: bool = False
    log_format: str = "text"
    metrics_listen: str | None = None
    #: The homeserver's own PostgreSQL database (Dendrite's), read only.
    homeserver_database: str | None = None
    #: The homeserver's client-server API base URL (``whoami`` auth, ``/versions``).
    homeserver_url: str | None = None
    homeserver_timeout: float = 10.0
    #: Who checks access tokens: ``local``, ``homeserver-database`` or ``whoami``.
    auth: str = "local"
    auth_cache_ttl: float = 60.0
    #: With ``homeserver-database``: seconds between re-checks of every cached token (one
    #: query), so a logout at the homeserver is honoured within that time; 0: never.
    auth_recheck_interval: float = 5.0
    auth_negative_ttl: float = 5.0
    auth_cache_size: int = 100_000
    #: ``nats://HOST:PORT`` of the homeserver's NATS JetStream: consume its output streams.
    jetstream: str | None = None
    #: The homeserver's stream name prefix (Dendrite's ``global.jetstream.topic_prefix``).
    jetstream_prefix: str = "Dendrite"
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

    def with_overrides(self, values: Mapping[str, Any], origin: str = "") -> Config:
        """A copy with every non-None value of ``values`` that names a field applied.

        Text is converted to the field's type (numbers, booleans); a value that cannot
        be, or is out of range, is a :class:`ConfigError` naming the setting (and
        ``origin``, where it came from).
        """
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None or key not in known:
                continue
            changes[key] = _convert(key, value, origin)
        config = replace(self, **changes)
        for key in changes:
            _check(config, key, origin)
        return config


class ConfigError(ValueError):
    """A setting's value is wrong; the message names the setting."""


#: The type each setting's value must have (None allowed where the default is None).
_TYPES: dict[str, type] = {
    "graceful_timeout": float,
    "keep_alive_timeout": float,
    "follow_poll_interval": float,
    "batch_size": int,
    "max_request_body": int,
    "access_log": bool,
    "homeserver_timeout": float,
    "auth_cache_ttl": float,
    "auth_negative_ttl": float,
    "auth_recheck_interval": float,
    "auth_cache_size": int,
    "local_writes": bool,
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _where(origin: str) -> str:
    return f" (in {origin})" if origin else ""


def _convert(key: str, value: Any, origin: str) -> Any:
    kind = _TYPES.get(key, str)
    bad = ConfigError(f"setting {key}: {value!r} is not {_KIND_NAMES[kind]}{_where(origin)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if kind in (int, float):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                raise bad from None
        if isinstance(value, int) or (kind is float and isinstance(value, float)):
            return kind(value)
        raise bad
    if not isinstance(value, str):
        raise bad
    return value


_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``; ValueError if it is not
    one or the port is outside 0-65535."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is out of range (0-65535)")
    return host.strip("[]"), port


def _check(config: Config, key: str, origin: str) -> None:
    value = getattr(config, key)
    problem = None
    if key in ("listen", "metrics_listen") and value is not None:
        try:
            parse_listen(value)
        except ValueError as exc:
            problem = str(exc)
    elif key in ("graceful_timeout", "keep_alive_timeout", "auth_recheck_interval") and value < 0:
        problem = f"{value} is negative"
    elif key == "follow_poll_interval" and value <= 0:
        problem = f"{value} is not a positive number of seconds"
    elif key in ("batch_size", "max_request_body") and value < 1:
        problem = f"{value} is less than 1"
    elif key == "log_format" and value not in ("text", "json"):
        problem = f"{value!r} is neither text nor json"
    elif key == "server_name" and not _SERVER_NAME.fullmatch(value):
        problem = f"{value!r} is not a server name (host or host:port)"
    if problem:
        raise ConfigError(f"setting {key}: {problem}{_where(origin)}")


_SERVER_NAME = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


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
    """A TOML config file: top-level keys named like the fields (``listen = "..."``).

    A missing or unreadable file, a TOML syntax error (with its line) or an unknown key
    is a :class:`ConfigError` naming the file.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    names = {f.name for f in fields(Config)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
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
        config = config.with_overrides(from_file(path), f"config file {path}")
    config = config.with_overrides(from_env(env), "the environment")
    return config.with_overrides(cli or {})
