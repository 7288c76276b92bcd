-- trio-sync schema, version 1. Written once for SQLite and PostgreSQL.
-- Positions are allocated by trio-sync at ingest; they are not the room server's.

-- Current position of every stream; rows updated in the same transaction as the data.
CREATE TABLE streams (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO streams (stream, position) VALUES
    ('pdu', 0), ('typing', 0), ('receipt', 0), ('invite', 0), ('to_device', 0),
    ('account_data', 0), ('device_list', 0), ('notification', 0), ('presence', 0),
    ('reject', 0);

-- Room events, one row per event, at the PDU position it was first ingested at.
CREATE TABLE events (
    pos BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    room_version TEXT NOT NULL,
    -- The event as clients receive it (client format), already serialised.
    client_json TEXT NOT NULL,
    -- The event as the room server sent it (federation format).
    pdu_json TEXT NOT NULL,
    -- 1 for events that arrived as old_room_event (backfill): stored, never in /sync.
    exclude_from_sync SMALLINT NOT NULL DEFAULT 0,
    txn_session BIGINT,
    txn_id TEXT,
    history_visibility TEXT,
    -- The state event this one replaced (its content is this one's unsigned.prev_content).
    replaces_state TEXT,
    -- The redaction event (client format) once this event has been redacted.
    redacted_because TEXT
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_replaces_state ON events (replaces_state);
CREATE INDEX events_room_topo ON events (room_id, depth, pos);

-- Room state as validity intervals: the event was part of the room's current state for
-- PDU positions added_at <= p < removed_at (removed_at = 2^63-1 while still current).
CREATE TABLE room_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- content.membership for m.room.member rows, otherwise NULL.
    membership TEXT,
    added_at BIGINT NOT NULL,
    removed_at BIGINT NOT NULL
);
CREATE INDEX room_state_room_removed ON room_state (room_id, removed_at);
CREATE INDEX room_state_room_added ON room_state (room_id, added_at);
CREATE INDEX room_state_key_removed ON room_state (state_key, removed_at);
CREATE INDEX room_state_key_added ON room_state (state_key, added_at);

-- Invites, local or over federation, by invite-stream position.
CREATE TABLE invites (
    pos BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    -- The invite event, client format, with unsigned.invite_room_state.
    event_json TEXT NOT NULL,
    -- Invite-stream position at which the invite stopped being active; NULL while active.
    retired_at BIGINT,
    retired_membership TEXT,
    retired_by_event_id TEXT
);
CREATE INDEX invites_user_pos ON invites (user_id, pos);
CREATE INDEX invites_user_retired ON invites (user_id, retired_at);

-- How far each ingest source has been consumed, committed with the data it produced.
CREATE TABLE ingest_offsets (
    source TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Log messages that could not be applied: kept whole, with the reason.
CREATE TABLE ingest_rejects (
    id BIGINT PRIMARY KEY,
    source TEXT NOT NULL,
    position BIGINT,
    reason TEXT NOT NULL,
    raw BYTEA NOT NULL,
    rejected_at BIGINT NOT NULL
);

-- Devices and their access tokens (stored as SHA-256 hex digests).
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    session_id BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Stored filters, numbered per user; an identical filter reuses its ID.
CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
CREATE UNIQUE INDEX filters_user_json ON filters (user_id, filter_json);
