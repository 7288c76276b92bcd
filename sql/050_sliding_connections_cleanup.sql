-- trio-sync schema, version 50: sliding sync connection state that is kept tidy and
-- tracks notification counts; invites from other servers get a place in room order.

-- Expired positions are found by age, so connections nobody can use any more are dropped.
CREATE INDEX sliding_positions_created ON sliding_positions (created_at);

-- The notification stream position a room was last sent at: a count written after it
-- sends the room again. Rows from before this version count as sent now.
ALTER TABLE sliding_rooms ADD COLUMN counts_at BIGINT NOT NULL DEFAULT 0;
UPDATE sliding_rooms SET counts_at = (SELECT position FROM streams WHERE stream = 'notification');

-- The PDU position current when an invite arrived: an invite from another server has no
-- room event here, and sorts among the user's rooms by this. NULL for invites stored
-- before this version.
ALTER TABLE invites ADD COLUMN pdu_at BIGINT;
