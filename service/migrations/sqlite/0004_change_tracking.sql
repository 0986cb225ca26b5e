-- Change tracking for the periodic enforcement pass (service/src/usage.rs), so that it reads
-- only the users whose status or engine access can have changed since its last pass instead
-- of every user every few seconds.
--
-- `revision`: taken from `revision_counter` whenever a column that decides a user's status,
-- announced threshold or engine access changes (or the user is created). SQLite has one
-- writer at a time, so revisions become visible in increasing order: a pass that read the
-- counter as `c` before its scan finds every later change with `revision > c`.
-- `expires_at`: when the user expires by time alone (`fixed_date`: the date; started
-- `start_on_first_use`: start plus duration; NULL otherwise or when out of range), so that a
-- pass finds who expired since the previous one through an index.
-- `users_deleted`: a deleted user's id and name with a revision, so that every panel
-- instance takes them off its engine; pruned after a day.
CREATE TABLE revision_counter (value INTEGER NOT NULL);
INSERT INTO revision_counter (value) VALUES (0);

ALTER TABLE users ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN expires_at INTEGER;
CREATE INDEX users_revision ON users (revision);
CREATE INDEX users_expires_at ON users (expires_at);

CREATE TABLE users_deleted (
    user_id INTEGER NOT NULL,
    username TEXT NOT NULL,
    revision INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX users_deleted_revision ON users_deleted (revision);

-- A new user goes through the update trigger below (which may run another trigger).
CREATE TRIGGER users_track_insert AFTER INSERT ON users
BEGIN
    UPDATE users SET enabled = enabled WHERE id = NEW.id;
END;

CREATE TRIGGER users_track_update AFTER UPDATE OF username, enabled, data_limit, used_traffic,
    expire_strategy, expire_date, usage_duration, activated_at ON users
BEGIN
    UPDATE revision_counter SET value = value + 1;
    UPDATE users SET revision = (SELECT value FROM revision_counter), expires_at = CASE
        WHEN NEW.expire_strategy = 'fixed_date' THEN NEW.expire_date
        WHEN NEW.expire_strategy = 'start_on_first_use'
            AND NEW.activated_at BETWEEN -4611686018427387904 AND 4611686018427387904
            AND NEW.usage_duration BETWEEN -4611686018427387904 AND 4611686018427387904
            THEN NEW.activated_at + NEW.usage_duration
        END
    WHERE id = NEW.id;
END;

CREATE TRIGGER users_track_delete AFTER DELETE ON users
BEGIN
    UPDATE revision_counter SET value = value + 1;
    INSERT INTO users_deleted (user_id, username, revision, deleted_at)
    VALUES (OLD.id, OLD.username, (SELECT value FROM revision_counter), CAST(strftime('%s', 'now') AS INTEGER));
END;

-- Existing users get their revision and expiry.
UPDATE users SET enabled = enabled;

-- Enforcement's activation deadlines and periodic resets: due users only, through an index.
CREATE INDEX users_activation_due ON users (activation_deadline) WHERE activated_at IS NULL;
CREATE INDEX users_reset_due ON users (data_limit_reset_strategy, COALESCE(traffic_reset_at, created_at));
