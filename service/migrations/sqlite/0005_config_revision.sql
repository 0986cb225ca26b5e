-- A revision of what subscriptions are built from besides the user: inbounds, their hosts,
-- which inbounds each service holds, and the settings. Every change to those tables bumps
-- `config_revision`, so a panel keeps them in memory (service/src/catalog.rs) and reloads them
-- only when a subscription request reads a newer revision with its user row.
CREATE TABLE config_revision (value INTEGER NOT NULL);
INSERT INTO config_revision (value) VALUES (1);

CREATE TRIGGER inbounds_bump_insert AFTER INSERT ON inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER inbounds_bump_update AFTER UPDATE ON inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER inbounds_bump_delete AFTER DELETE ON inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;

CREATE TRIGGER hosts_bump_insert AFTER INSERT ON hosts
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER hosts_bump_update AFTER UPDATE ON hosts
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER hosts_bump_delete AFTER DELETE ON hosts
BEGIN UPDATE config_revision SET value = value + 1; END;

CREATE TRIGGER services_inbounds_bump_insert AFTER INSERT ON services_inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER services_inbounds_bump_update AFTER UPDATE ON services_inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER services_inbounds_bump_delete AFTER DELETE ON services_inbounds
BEGIN UPDATE config_revision SET value = value + 1; END;
-- Deleting a service deletes its rows above by cascade; bumped here too, so that the change is
-- seen whether or not the cascade runs the triggers of the rows it removes.
CREATE TRIGGER services_bump_delete AFTER DELETE ON services
BEGIN UPDATE config_revision SET value = value + 1; END;

CREATE TRIGGER settings_bump_insert AFTER INSERT ON settings
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER settings_bump_update AFTER UPDATE ON settings
BEGIN UPDATE config_revision SET value = value + 1; END;
CREATE TRIGGER settings_bump_delete AFTER DELETE ON settings
BEGIN UPDATE config_revision SET value = value + 1; END;
