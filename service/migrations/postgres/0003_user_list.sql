-- The user list sorted by traffic (`GET /api/users?order=used_traffic_desc`) pages in SQL.
CREATE INDEX users_used_traffic ON users (used_traffic, id);
