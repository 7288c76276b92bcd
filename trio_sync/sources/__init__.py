"""Log sources: everything that feeds the ingest task.

Each module turns one kind of input into the same log messages (see :mod:`.base`):
``in_process`` (calls from the embedding program and the client endpoints),
``http_push`` (``POST /_trio_sync/v1/ingest``), ``jetstream`` (a homeserver's NATS
JetStream output streams) and ``file`` (a followed JSON-lines log). A new source is one
new module over :class:`.base.Source`; nothing under ``storage/`` or the notifier knows
which one is in use.
"""

from .base import Batch, Position, Source, run_source
from .file import FileSource, file_source, follow_file

__all__ = ["Batch", "FileSource", "Position", "Source", "file_source", "follow_file", "run_source"]
