-- The live classroom's `recent`: an organisation's latest questions, read
-- newest first without walking every event of the organisation.
CREATE INDEX chat_events_org_questions_idx ON chat_events (organization_id, created_at)
    WHERE role = 'user';
