-- trio-sync schema, version 60: a place in the room's history order (version 6) for the
-- backfilled events (old_room_event) stored before version 6, which version 6 could not
-- tell from outliers.
-- Before version 6 both were stored with exclude_from_sync = 1 and, since, neither has a
-- topo_anchor. What still tells them apart: an outlier is a state event the room server
-- sent with a state delta (AddStateEvents) because the delta adds it, so room_state (or,
-- for a forked event, event_state_before) names it; a backfilled event is never added to
-- the state by its own message. So an excluded event without a place that no state row
-- names is a backfilled one.
-- Its place is the one ingest gives backfill: just before the first stream event of the
-- room deeper than it that was stored before it (its own position when there is none),
-- among backfilled events by depth. Earlier backfilled events are not looked at (ingest
-- would also follow a deeper backfilled run's anchor); only stream events are, so that
-- the answer does not depend on the order rows are updated in.
-- Not recognised, and left unserved as before: a backfilled state event that a later
-- message made part of the state.
UPDATE events SET
    topo_anchor = COALESCE(
        (SELECT MIN(h.pos) FROM events h WHERE h.room_id = events.room_id
            AND h.depth > events.depth AND h.pos < events.pos AND h.exclude_from_sync = 0
            AND h.topo_anchor IS NOT NULL),
        events.pos),
    topo_sub = CASE
        WHEN depth < 0 THEN 0
        WHEN depth > 4611686018427387903 THEN 4611686018427387903
        ELSE depth END
WHERE exclude_from_sync = 1 AND topo_anchor IS NULL
    AND NOT EXISTS (SELECT 1 FROM room_state s WHERE s.room_id = events.room_id
        AND s.state_key = events.state_key AND s.event_id = events.event_id)
    AND NOT EXISTS (SELECT 1 FROM event_state_before b WHERE b.room_id = events.room_id
        AND b.event_id = events.event_id);
