"""Where log messages come from. Each source is one module over the same ingest task;
nothing under ``storage/`` or the notifier knows which one is in use."""

from .file import file_source, follow_file

__all__ = ["file_source", "follow_file"]
