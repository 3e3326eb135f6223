-- Knowledge: uploaded sources (with their ingest state, so interrupted jobs
-- resume after a restart) and their chunks with embeddings. The database is
-- the source of truth; search indexes are rebuilt from it.

CREATE TABLE knowledge_sources (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    storage_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'failed')),
    stage TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    page_count BIGINT,
    chunk_count BIGINT,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    uploaded_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX knowledge_sources_org_idx ON knowledge_sources (organization_id, created_at, id);
CREATE INDEX knowledge_sources_status_idx ON knowledge_sources (status);

CREATE TABLE chunks (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    source_id UUID NOT NULL REFERENCES knowledge_sources (id) ON DELETE CASCADE,
    ordinal BIGINT NOT NULL,
    page BIGINT NOT NULL,
    page_end BIGINT NOT NULL,
    heading_path TEXT NOT NULL,
    text TEXT NOT NULL,
    token_count BIGINT NOT NULL,
    start_ms BIGINT,
    embedding BYTEA,
    embedder TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX chunks_source_ordinal_key ON chunks (source_id, ordinal);
CREATE INDEX chunks_org_idx ON chunks (organization_id);
