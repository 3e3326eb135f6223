-- Billing: each organisation's subscription, its usage counters (exact under
-- concurrency: conditional UPDATEs on these rows), the questions already
-- counted (a repeated chat client_id is counted once), payments and the
-- Stripe events already applied.

CREATE TABLE subscriptions (
    organization_id UUID PRIMARY KEY NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    plan TEXT NOT NULL CHECK (plan IN ('free', 'basic', 'pro', 'enterprise')),
    status TEXT NOT NULL CHECK (status IN ('active', 'past_due', 'cancelled')),
    current_period_start TIMESTAMPTZ NOT NULL,
    -- NULL on free: it never ends.
    current_period_end TIMESTAMPTZ,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    -- How the current period was paid, and the payer to ask at renewal.
    method TEXT,
    payer_phone TEXT,
    stripe_customer_id TEXT,
    stripe_subscription_id TEXT,
    past_due_since TIMESTAMPTZ,
    -- The end of the period a renewal was last requested for.
    renewal_requested_for TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_period_end_idx ON subscriptions (current_period_end);
CREATE INDEX subscriptions_stripe_idx ON subscriptions (stripe_subscription_id);

-- Every organisation existing before billing starts on free.
INSERT INTO subscriptions (organization_id, plan, status, current_period_start,
    current_period_end, cancel_at_period_end, created_at, updated_at)
SELECT id, 'free', 'active', created_at, NULL, FALSE, created_at, created_at FROM organizations;

-- kind: questions (period = 'YYYY-MM', UTC), storage_bytes and members
-- (period = '').
CREATE TABLE usage_counters (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('questions', 'storage_bytes', 'members')),
    period TEXT NOT NULL,
    used BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, kind, period)
);

CREATE TABLE question_charges (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    charge_key TEXT NOT NULL,
    period TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, charge_key)
);

CREATE TABLE payments (
    id UUID PRIMARY KEY NOT NULL,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    plan TEXT NOT NULL CHECK (plan IN ('basic', 'pro', 'enterprise')),
    method TEXT NOT NULL CHECK (method IN ('mtn_momo', 'airtel_money', 'stripe')),
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'expired')),
    provider_reference TEXT,
    checkout_url TEXT,
    failure_reason TEXT,
    phone TEXT,
    created_by UUID,
    renewal BOOLEAN NOT NULL DEFAULT FALSE,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_check_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX payments_org_idx ON payments (organization_id, created_at, id);
CREATE INDEX payments_pending_idx ON payments (status, next_check_at);
CREATE INDEX payments_reference_idx ON payments (method, provider_reference);

CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
