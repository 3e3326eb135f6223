-- Keeps the migration numbers of both dialects aligned. SQLite gains a
-- trigger here that advances chat_sessions.last_seq on insert (its append is
-- one statement); PostgreSQL appends in a transaction that locks the
-- session row (UPDATE ... RETURNING last_seq, then INSERT), which needs none.
SELECT 1;
