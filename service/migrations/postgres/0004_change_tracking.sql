-- Change tracking for the periodic enforcement pass (service/src/usage.rs), so that it reads
-- only the users whose status or engine access can have changed since its last pass instead
-- of every user every few seconds.
--
-- `revision`: the id of the transaction that last changed a column deciding a user's status,
-- announced threshold or engine access (or created the user). Transactions commit in any
-- order, so a pass first takes `pg_snapshot_xmin(pg_current_snapshot())`, `x`: every
-- transaction below `x` had ended by then, so every change the pass's scan cannot see yet has
-- `revision >= x`, and the next pass looks from `x` on.
-- `expires_at`: when the user expires by time alone (`fixed_date`: the date; started
-- `start_on_first_use`: start plus duration; NULL otherwise or when out of range), so that a
-- pass finds who expired since the previous one through an index.
-- `users_deleted`: a deleted user's id and name with a revision, so that every panel
-- instance takes them off its engine; pruned after a day.
ALTER TABLE users ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN expires_at BIGINT;
CREATE INDEX users_revision ON users (revision);
CREATE INDEX users_expires_at ON users (expires_at);

CREATE TABLE users_deleted (
    user_id BIGINT NOT NULL,
    username TEXT NOT NULL,
    revision BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL
);
CREATE INDEX users_deleted_revision ON users_deleted (revision);

CREATE FUNCTION users_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := pg_current_xact_id()::text::bigint;
    NEW.expires_at := CASE
        WHEN NEW.expire_strategy = 'fixed_date' THEN NEW.expire_date
        WHEN NEW.expire_strategy = 'start_on_first_use'
            AND NEW.activated_at BETWEEN -4611686018427387904 AND 4611686018427387904
            AND NEW.usage_duration BETWEEN -4611686018427387904 AND 4611686018427387904
            THEN NEW.activated_at + NEW.usage_duration
        END;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_track BEFORE INSERT OR UPDATE OF username, enabled, data_limit, used_traffic,
    expire_strategy, expire_date, usage_duration, activated_at ON users
    FOR EACH ROW EXECUTE FUNCTION users_track();

CREATE FUNCTION users_track_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO users_deleted (user_id, username, revision, deleted_at)
    VALUES (OLD.id, OLD.username, pg_current_xact_id()::text::bigint,
            extract(epoch FROM now())::bigint);
    RETURN OLD;
END
$$;
CREATE TRIGGER users_track_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_track_delete();

-- Existing users get their revision and expiry.
UPDATE users SET enabled = enabled;

-- Enforcement's activation deadlines and periodic resets: due users only, through an index.
CREATE INDEX users_activation_due ON users (activation_deadline) WHERE activated_at IS NULL;
CREATE INDEX users_reset_due ON users (data_limit_reset_strategy, (COALESCE(traffic_reset_at, created_at)));
