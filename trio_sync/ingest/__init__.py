"""Ingest: the room server's output log into storage, strictly in order."""

from .apply import Applied, Item, apply_batch
from .messages import BadMessage, parse_message
from .runner import Ingestor

__all__ = [
    "Applied",
    "BadMessage",
    "Ingestor",
    "Item",
    "apply_batch",
    "parse_message",
]
