-- Initial schema (SQLite). Times are Unix seconds; flags are 0/1 integers; byte counts are
-- 64-bit integers. Keep in step with migrations/postgres/0001_initial.sql.
CREATE TABLE admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_sudo INTEGER NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    read_only INTEGER NOT NULL DEFAULT 0,
    all_services_access INTEGER NOT NULL DEFAULT 0,
    modify_users_access INTEGER NOT NULL DEFAULT 1,
    password_changed_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE admins_services (
    admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    PRIMARY KEY (admin_id, service_id)
);

CREATE TABLE inbounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL,
    config TEXT NOT NULL
);

CREATE TABLE services_inbounds (
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    inbound_id INTEGER NOT NULL REFERENCES inbounds(id) ON DELETE CASCADE,
    PRIMARY KEY (service_id, inbound_id)
);

CREATE TABLE hosts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    inbound_id INTEGER NOT NULL REFERENCES inbounds(id) ON DELETE CASCADE,
    remark TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER,
    sni TEXT,
    host TEXT,
    path TEXT,
    security TEXT NOT NULL DEFAULT 'inbound_default',
    weight INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    data_limit INTEGER,
    used_traffic INTEGER NOT NULL DEFAULT 0,
    lifetime_used_traffic INTEGER NOT NULL DEFAULT 0,
    data_limit_reset_strategy TEXT NOT NULL DEFAULT 'no_reset',
    traffic_reset_at INTEGER,
    expire_strategy TEXT NOT NULL DEFAULT 'never',
    expire_date INTEGER,
    usage_duration INTEGER,
    activation_deadline INTEGER,
    activated_at INTEGER,
    note TEXT,
    admin_id INTEGER REFERENCES admins(id) ON DELETE SET NULL,
    sub_updated_at INTEGER,
    sub_last_user_agent TEXT,
    sub_revoked_at INTEGER,
    online_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX users_admin ON users(admin_id);

CREATE TABLE users_services (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, service_id)
);

-- Hourly traffic per user: `hour` is the Unix time of the hour's start.
CREATE TABLE usage_hourly (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hour INTEGER NOT NULL,
    uplink INTEGER NOT NULL DEFAULT 0,
    downlink INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hour)
);

-- The engine counter values (monotonic within one engine run) already added to users, so
-- that usage is applied exactly once across panel crashes and restarts.
CREATE TABLE usage_cursor (
    engine_run TEXT NOT NULL,
    user_name TEXT NOT NULL,
    uplink INTEGER NOT NULL,
    downlink INTEGER NOT NULL,
    PRIMARY KEY (engine_run, user_name)
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    admin TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);

-- Failed logins per client address, for throttling (shared by every panel instance).
CREATE TABLE login_failures (
    ip TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);
