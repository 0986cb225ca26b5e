-- Login throttling per client and admin name: a client's successful login as one admin no
-- longer forgets its failures as another. `client` is the peer's IPv4 address, or the /64
-- of its IPv6 address. Attempts are counted before the password is checked, so concurrent
-- attempts cannot get past the limit. (What the old table held is dropped: at most five
-- minutes of throttling.)
DROP TABLE login_failures;
CREATE TABLE login_attempts (
    client TEXT NOT NULL,
    username TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    PRIMARY KEY (client, username)
);
