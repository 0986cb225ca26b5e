-- The user (row id) a cursor's traffic was last charged to, so that after a crash the
-- previous run's leftover is charged to that user, not to whoever holds the name by then
-- (a user deleted and created again by another panel instance while this one was down).
-- NULL for cursors written before this column, or when no user had the name.
ALTER TABLE usage_cursor ADD COLUMN user_id INTEGER;
