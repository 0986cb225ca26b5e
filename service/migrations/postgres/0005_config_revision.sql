-- A revision of what subscriptions are built from besides the user: inbounds, their hosts,
-- which inbounds each service holds, and the settings. Every statement that changes those
-- tables bumps `config_revision`, so a panel keeps them in memory (service/src/catalog.rs) and
-- reloads them only when a subscription request reads a newer revision with its user row.
--
-- A reader takes the revision before it reads the tables. A change it reads the revision of
-- had committed, so the tables show it; a change committed after the revision was read may
-- show too, and then the next request reads a newer revision and reloads: never stale.
CREATE TABLE config_revision (value BIGINT NOT NULL);
INSERT INTO config_revision (value) VALUES (1);

CREATE FUNCTION config_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_revision SET value = value + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER inbounds_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON inbounds
    FOR EACH STATEMENT EXECUTE FUNCTION config_revision_bump();
CREATE TRIGGER hosts_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hosts
    FOR EACH STATEMENT EXECUTE FUNCTION config_revision_bump();
CREATE TRIGGER services_inbounds_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON services_inbounds FOR EACH STATEMENT EXECUTE FUNCTION config_revision_bump();
CREATE TRIGGER services_bump AFTER DELETE OR TRUNCATE ON services
    FOR EACH STATEMENT EXECUTE FUNCTION config_revision_bump();
CREATE TRIGGER settings_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION config_revision_bump();
