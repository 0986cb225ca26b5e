-- What a user's engine credentials are made of besides their status: their key and their
-- services. `access_revision` is taken from `revision_counter` (as `revision` is in 0004, so
-- the same change mark finds it) whenever either changes, so that every panel instance gives
-- its engine a user's new credentials, not only the instance that made the change.
-- (`revision` leaves these out: it moves with every byte of traffic recorded, and a changed
-- user is pushed only when their access flips.)
ALTER TABLE users ADD COLUMN access_revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX users_access_revision ON users (access_revision);

CREATE TRIGGER users_key_track AFTER UPDATE OF key ON users
BEGIN
    UPDATE revision_counter SET value = value + 1;
    UPDATE users SET access_revision = (SELECT value FROM revision_counter) WHERE id = NEW.id;
END;

CREATE TRIGGER users_services_track_insert AFTER INSERT ON users_services
BEGIN
    UPDATE revision_counter SET value = value + 1;
    UPDATE users SET access_revision = (SELECT value FROM revision_counter) WHERE id = NEW.user_id;
END;

CREATE TRIGGER users_services_track_delete AFTER DELETE ON users_services
BEGIN
    UPDATE revision_counter SET value = value + 1;
    UPDATE users SET access_revision = (SELECT value FROM revision_counter) WHERE id = OLD.user_id;
END;
