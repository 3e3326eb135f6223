-- A chat event is appended by one statement on SQLite
-- (INSERT ... SELECT last_seq + 1 FROM chat_sessions); this trigger moves the
-- session's last_seq and updated_at in the same statement, so the append is
-- atomic without an explicit transaction (one round trip per event).
CREATE TRIGGER chat_events_advance_session AFTER INSERT ON chat_events
BEGIN
    UPDATE chat_sessions SET last_seq = NEW.seq, updated_at = NEW.created_at
    WHERE id = NEW.session_id AND last_seq < NEW.seq;
END;
