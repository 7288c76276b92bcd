"""Ingest: the room server's output log into storage, strictly in order."""

from .apply import Applied, Item, apply_batch
from .messages import BadMessage, parse_message
from .runner import Ingestor, follow_file

__all__ = [
    "Applied",
    "BadMessage",
    "Ingestor",
    "Item",
    "apply_batch",
    "follow_file",
    "parse_message",
]
