-- The first-token latency of questions as a histogram per organisation,
-- day and persona (the nil UUID for none), kept beside the daily totals and
-- written in the same transaction as the events, so that the overview's
-- percentiles read totals, never raw events. Buckets: 0-127 ms exact, then
-- 64 buckets per power of two (a bucket is within 1/64 of its values);
-- `analytics::store::latency_bucket` is the one definition in code.
-- Totals survive retention and erasure, as analytics_daily's do.

CREATE TABLE analytics_latency (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    persona_id UUID NOT NULL,
    bucket INTEGER NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (organization_id, day, persona_id, bucket)
);

-- The histogram of the events already recorded.
INSERT INTO analytics_latency (organization_id, day, persona_id, bucket, count)
WITH RECURSIVE
    exact (v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM exact WHERE v < 127),
    mag (m, w) AS (SELECT 7, CAST(2 AS BIGINT) UNION ALL SELECT m + 1, w * 2 FROM mag WHERE m < 30),
    sub (k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM sub WHERE k < 63),
    bounds (bucket, lo, hi) AS (
        SELECT v, CAST(v AS BIGINT), CAST(v + 1 AS BIGINT) FROM exact
        UNION ALL
        SELECT 128 + (m - 7) * 64 + k, (64 + k) * w, (65 + k) * w FROM mag, sub
    )
SELECT e.organization_id, e.day, COALESCE(e.persona_id, '00000000-0000-0000-0000-000000000000'::uuid), b.bucket, COUNT(*)
FROM analytics_events e
JOIN bounds b ON e.first_token_ms >= b.lo AND e.first_token_ms < b.hi
WHERE e.kind = 'question' AND e.first_token_ms IS NOT NULL
GROUP BY e.organization_id, e.day, COALESCE(e.persona_id, '00000000-0000-0000-0000-000000000000'::uuid), b.bucket;

-- Questions of one organisation in time order (the CSV export pages
-- through them by (at, id)).
DROP INDEX analytics_events_org_at_idx;
CREATE INDEX analytics_events_org_kind_at_idx ON analytics_events (organization_id, kind, at, id);
