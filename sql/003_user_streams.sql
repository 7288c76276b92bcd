-- trio-sync schema, version 3: the per-user streams (account data, receipts, to-device,
-- device lists, one-time-key counts, unread counts, presence). Typing is kept in memory.
-- Every stream counter these use ('account_data', 'receipt', 'to_device', 'device_list',
-- 'notification', 'presence') was created with the streams table in version 1.

-- Account data, global (room_id = '') and per room; one row per key, at the position of
-- its latest write.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);

-- Each user's latest receipt of each type per room (and thread: '' when unthreaded).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

-- To-device messages waiting for their device to acknowledge them (a later `since`).
CREATE TABLE device_inbox (
    pos BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX device_inbox_device_pos ON device_inbox (user_id, device_id, pos);

-- Transactions of sendToDevice already applied, per sending device and target, so that a
-- retried request delivers nothing twice (kept after delivery: a retry may come later).
CREATE TABLE device_txns (
    sender TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (sender, sender_device, txn_id, user_id, device_id)
);

-- The device-list position of each user's latest key change.
CREATE TABLE key_changes (
    user_id TEXT PRIMARY KEY,
    pos BIGINT NOT NULL
);
CREATE INDEX key_changes_pos ON key_changes (pos);

-- One-time-key counts and unused fallback key types per device, as JSON.
CREATE TABLE device_key_counts (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    one_time_key_counts TEXT NOT NULL,
    fallback_key_types TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unread counts per user and room (thread_id '' for the main timeline), as the
-- homeserver's push evaluation reported them.
CREATE TABLE unread_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notification_count BIGINT NOT NULL,
    highlight_count BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
CREATE INDEX unread_counts_user_pos ON unread_counts (user_id, pos);

-- Each user's presence as others see it, at the position of its latest change.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    currently_active SMALLINT NOT NULL,
    pos BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (pos);

-- Presence per device; a user's presence combines them (online > unavailable > offline).
CREATE TABLE device_presence (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    presence TEXT NOT NULL,
    last_active_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Membership changes in a range of positions, whatever the room (device lists).
CREATE INDEX room_state_type_added ON room_state (type, added_at);
