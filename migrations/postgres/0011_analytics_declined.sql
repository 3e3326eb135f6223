-- Questions declined as not covered, per organisation and day, newest
-- last: the knowledge-gaps report reads the newest of a period through
-- this index alone, instead of walking every question of the period and
-- looking up each row to see whether it was declined (about one in seven
-- was, in a busy school's month).
CREATE INDEX analytics_events_declined_idx
    ON analytics_events (organization_id, kind, refusal, day, at, id)
    WHERE kind = 'question' AND refusal = 'not_covered';
