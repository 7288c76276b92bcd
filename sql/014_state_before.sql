-- trio-sync schema, version 14: the state at events of forked room histories.
-- For an event whose state (before it) differs from the room's state just before its
-- position — a new_room_event with state_before_adds_event_ids /
-- state_before_removes_event_ids — one row per differing (type, state_key): the entry in
-- force at the event (event_id '' when the key had none there). History visibility,
-- unsigned.membership and /context judge the event by these rows.
CREATE TABLE event_state_before (
    pos BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- content.membership for m.room.member rows with an event, otherwise NULL.
    membership TEXT,
    PRIMARY KEY (pos, type, state_key)
);
CREATE INDEX event_state_before_room ON event_state_before (room_id, pos);
