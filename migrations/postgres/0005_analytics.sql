-- Analytics: the raw events the server records as things happen (kept for
-- analytics.retention_days), and daily totals per organisation, day,
-- persona and member, upserted in the same transaction as the events they
-- count (reports read totals). `day` is the UTC date as 'YYYY-MM-DD'.
-- Totals use the nil UUID for "no persona" and for an erased member.
-- `user_id` has no foreign key: a removed member's events stay (unless the
-- removal erased them), as their chat history would.

CREATE TABLE analytics_events (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    user_id UUID,
    persona_id UUID,
    session_id UUID,
    seq BIGINT,
    text TEXT,
    grounded BOOLEAN,
    refusal TEXT,
    first_token_ms BIGINT,
    total_ms BIGINT,
    provider TEXT,
    detail TEXT NOT NULL,
    embedding BYTEA,
    day TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX analytics_events_org_day_idx ON analytics_events (organization_id, kind, day);
CREATE INDEX analytics_events_org_at_idx ON analytics_events (organization_id, at, id);
CREATE INDEX analytics_events_user_idx ON analytics_events (organization_id, user_id, at);
CREATE INDEX analytics_events_at_idx ON analytics_events (at);

CREATE TABLE analytics_daily (
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
);
CREATE INDEX analytics_daily_user_idx ON analytics_daily (organization_id, user_id, day);

-- Restart-safe jobs: when each last ran to completion.
CREATE TABLE analytics_jobs (
    name TEXT PRIMARY KEY NOT NULL,
    last_run_at TIMESTAMPTZ NOT NULL
);

ALTER TABLE users ADD COLUMN weekly_digest BOOLEAN NOT NULL DEFAULT FALSE;
