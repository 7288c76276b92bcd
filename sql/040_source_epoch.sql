-- What a source's positions count in: a followed file's device and inode, a JetStream
-- stream's creation time. A position under another epoch says nothing about this one.
ALTER TABLE ingest_offsets ADD COLUMN epoch TEXT;
