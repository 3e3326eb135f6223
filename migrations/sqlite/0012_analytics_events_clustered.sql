-- Raw events stored in the order of (organisation, kind, time) (WITHOUT
-- ROWID): an organisation's questions lie together on disk, so exporting a
-- school's year or reading its month of declined questions reads its own
-- pages one after another, instead of one page per row among every other
-- school's (rows were stored in the order they were written, all
-- organisations interleaved). The key is the export's order, so its index
-- (organisation, kind, at, id) is the table itself. `id` stays as it was
-- made (a fresh UUID per event); nothing looks an event up by it alone.
-- Same columns and other indexes; the rows are copied over.

CREATE TABLE analytics_events_keyed (
    id UUID NOT NULL,
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
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, kind, at, id)
) WITHOUT ROWID;
INSERT INTO analytics_events_keyed (id, organization_id, kind, user_id, persona_id, session_id,
    seq, text, grounded, refusal, first_token_ms, total_ms, provider, detail, embedding, day, at)
SELECT id, organization_id, kind, user_id, persona_id, session_id,
    seq, text, grounded, refusal, first_token_ms, total_ms, provider, detail, embedding, day, at
FROM analytics_events ORDER BY organization_id, kind, at, id;
DROP TABLE analytics_events;
ALTER TABLE analytics_events_keyed RENAME TO analytics_events;
CREATE INDEX analytics_events_org_day_idx ON analytics_events (organization_id, kind, day);
CREATE INDEX analytics_events_user_idx ON analytics_events (organization_id, user_id, at);
CREATE INDEX analytics_events_at_idx ON analytics_events (at);
-- Declined questions (0011), keyed so that the planner, which has no
-- statistics, sees it match more of the gaps report's filter than
-- analytics_events_org_day_idx does (PostgreSQL's is the same).
CREATE INDEX analytics_events_declined_idx
    ON analytics_events (organization_id, kind, refusal, day, at, id)
    WHERE kind = 'question' AND refusal = 'not_covered';
