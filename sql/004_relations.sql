-- trio-sync schema, version 4: the relations index. One row per stored event whose
-- content carries an `m.relates_to` with a `rel_type` and an `event_id` (any rel_type),
-- written at ingest with the event; removed when the event is redacted (the redaction
-- algorithms of every room version drop `m.relates_to`) or its room purged.
CREATE TABLE relations (
    -- The child: the event that relates to another, and its PDU position.
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- The parent: the event related to (it need not be stored yet).
    parent_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    -- The child's event type and sender.
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    pos BIGINT NOT NULL,
    -- 1 when the child's content has an object `m.new_content` (needed by a valid edit).
    new_content SMALLINT NOT NULL
);
CREATE INDEX relations_parent ON relations (room_id, parent_id, rel_type, event_type, pos);
CREATE INDEX relations_room_type_pos ON relations (room_id, rel_type, pos);
