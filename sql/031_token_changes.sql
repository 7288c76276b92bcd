-- Moved by every change of a device or access token, in the same transaction, so that a
-- process caching token lookups learns of changes made by any other process.
CREATE TABLE token_changes (
    id INTEGER PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO token_changes (id, position) VALUES (1, 0);
