-- trio-sync schema, version 6: the room history order of /messages and /context.
-- Each event of a room's history has a key (topo_anchor, topo_sub, pos):
--   * events of the room stream: (pos, 2^62, pos), so stream order;
--   * backfilled events (old_room_event): (anchor, depth, pos), where anchor is the
--     smallest anchor of the room's history events deeper than the event when it was
--     stored (its own position if there is none): backfilled history sits just before the
--     stream event it precedes, in topological order (depth, then position).
-- Outliers (state events sent along with a state delta) have no key: they are not history.
-- Backfilled events stored before this version cannot be told from outliers and keep none.
ALTER TABLE events ADD COLUMN topo_anchor BIGINT;
ALTER TABLE events ADD COLUMN topo_sub BIGINT;
UPDATE events SET topo_anchor = pos, topo_sub = 4611686018427387904 WHERE exclude_from_sync = 0;
CREATE INDEX events_room_history ON events (room_id, topo_anchor, topo_sub, pos);
