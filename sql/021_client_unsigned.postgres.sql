-- Client events keep only the unsigned keys that are the same for every viewer
-- (prev_content, replaces_state, redacted_because); federation fields such as age_ts,
-- invite_room_state, knock_room_state or prev_sender stored by earlier versions go.
UPDATE events SET client_json = (
    SELECT (CASE
        WHEN kept.u IS NULL THEN doc.e - 'unsigned'
        ELSE jsonb_set(doc.e, '{unsigned}', kept.u)
    END)::text
    FROM (SELECT events.client_json::jsonb AS e) AS doc,
    LATERAL (
        SELECT jsonb_object_agg(key, value) AS u FROM jsonb_each(doc.e -> 'unsigned')
        WHERE key IN ('prev_content', 'replaces_state', 'redacted_because')
    ) AS kept
)
WHERE jsonb_typeof(client_json::jsonb -> 'unsigned') = 'object'
AND EXISTS (
    SELECT 1 FROM jsonb_object_keys(client_json::jsonb -> 'unsigned') AS k
    WHERE k NOT IN ('prev_content', 'replaces_state', 'redacted_because')
);
