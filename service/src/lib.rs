//! The Marzneshin panel: the admin API over a SQL database, driving the engine in the same
//! process through `engine::Handle`.
//!
//! ```text
//!  admins ─► poem + OpenAPI (api/) ─► data layer (db) ─► SQLite | PostgreSQL
//!                                         │
//!            sync: users/inbounds ───────►│ engine::Handle (upsert, remove, apply)
//!            usage: monotonic counters ◄──┘ deltas applied exactly once (usage_cursor)
//!            webhooks: outbox rows written with each change ─► signed POSTs, in order
//! ```
//!
//! Start with [`serve::run`].

pub mod access_log;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod fetches;
pub mod model;
pub mod serve;
pub mod subscription;
pub mod sync;
pub mod usage;
pub mod webhooks;
