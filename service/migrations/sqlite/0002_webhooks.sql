-- Webhooks (docs/webhooks.md): events wait in an outbox, written in the same transaction as
-- the change that caused them, until the delivery task has sent them (then they are deleted)
-- or given up on them (`failed_at`). Delivery follows `id` order.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds.
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    failed_at INTEGER
);
CREATE INDEX webhook_outbox_pending ON webhook_outbox (failed_at, id);

-- What was last announced about each user, so that `user.limited`, `user.expired` and
-- `user.usage_threshold` are sent once per change (compare-and-set, safe with several panels).
ALTER TABLE users ADD COLUMN webhook_status TEXT;
ALTER TABLE users ADD COLUMN webhook_threshold INTEGER NOT NULL DEFAULT 0;
