-- Personas, avatar models and chat: the same schema as migrations/sqlite, in PostgreSQL types.

CREATE TABLE avatar_models (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX avatar_models_org_idx ON avatar_models (organization_id, created_at, id);

CREATE TABLE avatar_model_versions (
    model_id UUID NOT NULL REFERENCES avatar_models (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    storage_key TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    bounding_box TEXT NOT NULL,
    animations TEXT NOT NULL,
    triangle_count BIGINT NOT NULL,
    vertex_count BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE UNIQUE INDEX avatar_model_versions_key_key ON avatar_model_versions (storage_key);

CREATE TABLE personas (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    subject TEXT,
    description TEXT,
    language TEXT NOT NULL,
    grade_level TEXT,
    system_prompt TEXT,
    scope_all BOOLEAN NOT NULL,
    blocked_topics TEXT NOT NULL,
    stay_on_subject BOOLEAN NOT NULL,
    avatar_model_id UUID REFERENCES avatar_models (id) ON DELETE SET NULL,
    gestures TEXT NOT NULL,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX personas_org_idx ON personas (organization_id, created_at, id);
CREATE INDEX personas_avatar_idx ON personas (avatar_model_id);

CREATE TABLE persona_sources (
    persona_id UUID NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
    source_id UUID NOT NULL REFERENCES knowledge_sources (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    PRIMARY KEY (persona_id, source_id)
);
CREATE INDEX persona_sources_source_idx ON persona_sources (source_id);

CREATE TABLE chat_sessions (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    persona_id UUID NOT NULL REFERENCES personas (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX chat_sessions_org_idx ON chat_sessions (organization_id, created_at, id);
CREATE INDEX chat_sessions_user_idx ON chat_sessions (user_id, created_at, id);

CREATE TABLE chat_events (
    session_id UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    client_id TEXT,
    reply_to BIGINT,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE UNIQUE INDEX chat_events_client_key ON chat_events (session_id, client_id);
CREATE UNIQUE INDEX chat_events_reply_key ON chat_events (session_id, reply_to);
