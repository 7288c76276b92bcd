-- trio-sync schema, version 70: membership changes in a range of positions (device lists)
-- are found by an index that leads with the position, not with the event type.
-- An index leading with `type` looked, to a planner without statistics (SQLite always
-- here; PostgreSQL until autovacuum's first ANALYZE), like the best way to find one
-- user's memberships or one room's members, and walked every membership row of the
-- database instead: a complete sync then grew with the size of the whole database.
DROP INDEX room_state_type_added;
CREATE INDEX room_state_added_type ON room_state (added_at, type);
