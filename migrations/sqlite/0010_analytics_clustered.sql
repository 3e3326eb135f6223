-- The daily totals and the latency histogram, stored in the order of their
-- key (WITHOUT ROWID): an organisation's days lie together on disk, so a
-- report over 30 days reads a few consecutive pages instead of one page
-- per row (rows were stored in the order they were first written, every
-- organisation's day interleaved with every other's). Same columns, keys
-- and index; the rows are copied over.

CREATE TABLE analytics_daily_keyed (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    persona_id UUID NOT NULL,
    user_id UUID NOT NULL,
    student BOOLEAN NOT NULL,
    questions BIGINT NOT NULL,
    grounded BIGINT NOT NULL,
    refusals BIGINT NOT NULL,
    flagged BIGINT NOT NULL,
    not_covered BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    resumes BIGINT NOT NULL,
    logins BIGINT NOT NULL,
    last_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, day, persona_id, user_id)
) WITHOUT ROWID;
INSERT INTO analytics_daily_keyed (organization_id, day, persona_id, user_id, student,
    questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, last_at)
SELECT organization_id, day, persona_id, user_id, student,
    questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, last_at
FROM analytics_daily;
DROP TABLE analytics_daily;
ALTER TABLE analytics_daily_keyed RENAME TO analytics_daily;
CREATE INDEX analytics_daily_user_idx ON analytics_daily (organization_id, user_id, day);

CREATE TABLE analytics_latency_keyed (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    persona_id UUID NOT NULL,
    bucket INTEGER NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (organization_id, day, persona_id, bucket)
) WITHOUT ROWID;
INSERT INTO analytics_latency_keyed (organization_id, day, persona_id, bucket, count)
SELECT organization_id, day, persona_id, bucket, count FROM analytics_latency;
DROP TABLE analytics_latency;
ALTER TABLE analytics_latency_keyed RENAME TO analytics_latency;
