-- The questions of an organisation in (at, id) order, with every column
-- the CSV export, the flags and a student's recent questions read, in the
-- index itself: those reads become index-only scans of the organisation's
-- range instead of a visit to the heap for every row. The heap holds rows
-- in the order they were written, so a school's questions are spread over
-- every page of it; exporting a million of one school's questions out of
-- ten million read the whole 4.5 GB table (73k rows/s from disk, against
-- 273k with this index, bench/analytics). Same key as the index it
-- replaces, so every read that used that one can use this one.
--
-- Plain CREATE INDEX (in the migration's transaction): events are written
-- off the request path, and a batch that waits for the build (about 30 s
-- per ten million events) waits in the recorder's queue, which drops
-- analytics before it delays chat.
DROP INDEX analytics_events_org_kind_at_idx;
CREATE INDEX analytics_events_org_kind_at_idx
    ON analytics_events (organization_id, kind, at, id)
    INCLUDE (day, user_id, persona_id, session_id, seq, grounded, refusal, first_token_ms,
             total_ms, provider, text);
