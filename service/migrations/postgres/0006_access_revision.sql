-- What a user's engine credentials are made of besides their status: their key and their
-- services. `access_revision` is the id of the transaction that last changed either (set as
-- `revision` is in 0004, so the same change mark finds it), so that every panel instance
-- gives its engine a user's new credentials, not only the instance that made the change.
-- (`revision` leaves these out: it moves with every byte of traffic recorded, and a changed
-- user is pushed only when their access flips.)
ALTER TABLE users ADD COLUMN access_revision BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_access_revision ON users (access_revision);

CREATE FUNCTION users_key_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.access_revision := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_key_track BEFORE UPDATE OF key ON users
    FOR EACH ROW EXECUTE FUNCTION users_key_track();

CREATE FUNCTION users_services_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE users SET access_revision = pg_current_xact_id()::text::bigint
        WHERE id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE users SET access_revision = pg_current_xact_id()::text::bigint
        WHERE id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_services_track AFTER INSERT OR UPDATE OR DELETE ON users_services
    FOR EACH ROW EXECUTE FUNCTION users_services_track();
