-- Issue 14 (hardening).
--
-- Sign-in attempts for addresses that have no account, counted and locked
-- exactly as an account's are, so that an unknown address and a locked
-- account answer alike. Keyed by the SHA-256 of the lower-cased address
-- (no address is kept).
CREATE TABLE login_ghosts (
    email_hash TEXT PRIMARY KEY NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_ghosts_updated_idx ON login_ghosts (updated_at);

-- One row per refresh-token family (a sign-in and its rotations). A
-- family is revoked here, once; a rotation takes this row first and
-- refuses a revoked family, so a token inserted by a rotation racing a
-- revocation is dead too.
CREATE TABLE refresh_families (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id);

INSERT INTO refresh_families (id, organization_id, user_id, revoked_at, created_at)
SELECT family_id, (array_agg(organization_id))[1], (array_agg(user_id))[1],
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN MAX(revoked_at) END,
       MIN(created_at)
FROM refresh_tokens GROUP BY family_id;
