"""Simplified Sliding Sync (MSC4186): request model, connection store, room lists,
room and extension builders, over the same stores, notifier and event serialisation as
``/sync``."""
