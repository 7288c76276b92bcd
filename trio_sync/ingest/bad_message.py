"""The one error a log message can be: unusable, recorded and skipped."""

from __future__ import annotations


class BadMessage(Exception):
    """A log message that is malformed or inconsistent with what is stored."""
