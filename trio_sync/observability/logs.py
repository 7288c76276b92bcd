"""Logging for the ``trio-sync`` command: text or one JSON object per line, the access
log, and a filter that keeps access tokens out of every line.

The access log (logger ``trio_sync.access``) is off unless asked for; each line carries
the method, the path (never its query string, where a token may be), the status, the
duration and the authenticated user.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

ACCESS = logging.getLogger("trio_sync.access")
#: The attributes an access-log record carries besides its message.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "user")

_SECRETS = re.compile(
    r"(?P<key>access_token=|[Bb]earer\s+|\"access_token\"\s*:\s*\")(?P<value>[^&\s\"',;]+)"
)
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with anything that looks like an access token or bearer secret masked."""
    return _SECRETS.sub(r"\g<key><redacted>", text)


class RedactingFilter(logging.Filter):
    """Masks tokens in a record's final message (arguments included) and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_extras(record.__dict__))
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def _extras(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in _STANDARD and not k.startswith("_")}


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


def configure_logging(
    *, verbose: bool = False, json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """Log to ``stream`` (stderr): INFO, or DEBUG with ``verbose``; text or JSON lines.

    Every handler gets :class:`RedactingFilter`. Replaces earlier configuration.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            _UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("asyncio", "hpack", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_access(method: str, path: str, status: int, seconds: float, user: str | None) -> None:
    """One access-log line (only called when the access log is on)."""
    duration_ms = round(seconds * 1000, 1)
    ACCESS.info(
        "%s %s %d %.1fms %s",
        method,
        path,
        status,
        duration_ms,
        user or "-",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user": user,
        },
    )
