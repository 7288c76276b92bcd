-- trio-sync schema, version 11: Simplified Sliding Sync (MSC4186) connection state.
-- A connection is (user, device, conn_id). Each response it was given is a position; a
-- request names the position it builds on, so what the client has is what was recorded up
-- to that position. Room rows are versioned by the position that wrote them.

CREATE TABLE sliding_connections (
    id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);

-- One row per response given: the stream token it was built at, the room subscriptions
-- in force after it (sticky across requests) and each list's count and window (JSON).
CREATE TABLE sliding_positions (
    pos BIGINT PRIMARY KEY,
    connection_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    subscriptions TEXT NOT NULL,
    lists TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sliding_positions_connection ON sliding_positions (connection_id, pos);

-- What a connection has been sent of a room, as of the position that sent it: the PDU
-- position its timeline and state reach, the timeline limit and required_state (JSON)
-- it was sent with, and the users whose member events went with it ($LAZY, JSON).
CREATE TABLE sliding_rooms (
    connection_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    pos BIGINT NOT NULL,
    sent_upto BIGINT NOT NULL,
    timeline_limit BIGINT NOT NULL,
    required_state TEXT NOT NULL,
    lazy_members TEXT NOT NULL,
    PRIMARY KEY (connection_id, room_id, pos)
);

-- The last position and connection number handed out.
CREATE TABLE sliding_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sliding_counters (name, value) VALUES ('pos', 0), ('connection', 0);
