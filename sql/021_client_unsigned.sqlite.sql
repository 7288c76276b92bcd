-- Client events keep only the unsigned keys that are the same for every viewer
-- (prev_content, replaces_state, redacted_because); federation fields such as age_ts,
-- invite_room_state, knock_room_state or prev_sender stored by earlier versions go.
UPDATE events SET client_json = (
    SELECT CASE
        WHEN count(u.key) = 0 THEN json_remove(events.client_json, '$.unsigned')
        ELSE json_set(
            events.client_json,
            '$.unsigned',
            json_group_object(
                u.key, CASE WHEN u.type IN ('object', 'array') THEN json(u.value) ELSE u.value END
            )
        )
    END
    FROM json_each(events.client_json, '$.unsigned') AS u
    WHERE u.key IN ('prev_content', 'replaces_state', 'redacted_because')
)
WHERE json_type(client_json, '$.unsigned') = 'object'
AND EXISTS (
    SELECT 1 FROM json_each(events.client_json, '$.unsigned') AS k
    WHERE k.key NOT IN ('prev_content', 'replaces_state', 'redacted_because')
);
