//! What subscriptions are built from besides the user, kept in memory: every inbound with its
//! hosts, which inbounds each service holds, and the subscription settings.
//!
//! ```text
//!  GET /sub/..  ─► one query: user row + its service ids + config_revision (r)
//!                      │
//!                      ├─ catalog.revision >= r ─► reuse the catalog
//!                      └─ otherwise ─► reload (one request at a time; others wait for it)
//! ```
//!
//! Triggers bump `config_revision` (migration 0005) on every change to `inbounds`, `hosts`,
//! `services_inbounds` and `settings`, whichever panel instance makes it. A load reads the
//! revision before the tables, so a catalog never holds data older than its revision says: a
//! change committed between the two reads shows in the tables under the older revision, and the
//! next request, reading the newer one, reloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use sqlx::Row;

use crate::api::{hosts, settings};
use crate::db::Db;
use crate::subscription::{InboundEntry, SubscriptionOptions};

/// One load of the tables subscriptions read.
#[derive(Debug)]
pub struct Catalog {
    /// `config_revision` as read before the tables.
    pub revision: i64,
    /// Inbounds with their hosts, by id (those whose stored configuration parses).
    inbounds: BTreeMap<i64, InboundEntry>,
    /// Inbound ids of each service.
    services: HashMap<i64, Vec<i64>>,
    /// The subscription settings.
    pub options: SubscriptionOptions,
}

impl Catalog {
    /// Reads the revision, then the tables.
    async fn load(db: &Db) -> anyhow::Result<Catalog> {
        let revision = revision(db).await?;
        let rows = sqlx::query("SELECT id, config FROM inbounds ORDER BY id")
            .fetch_all(&db.reader)
            .await?;
        let mut hosts = hosts::all(db).await?;
        let mut inbounds = BTreeMap::new();
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let config: String = r.try_get("config")?;
            let hosts = hosts
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect();
            match InboundEntry::from_json(&config, hosts) {
                Ok(entry) => {
                    inbounds.insert(id, entry);
                }
                Err(e) => tracing::warn!(inbound = id, "stored inbound does not parse: {e:#}"),
            }
        }
        let mut services: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in sqlx::query("SELECT service_id, inbound_id FROM services_inbounds")
            .fetch_all(&db.reader)
            .await?
        {
            services
                .entry(r.try_get("service_id")?)
                .or_default()
                .push(r.try_get("inbound_id")?);
        }
        let options = settings::load_subscription_options(db).await?;
        Ok(Catalog {
            revision,
            inbounds,
            services,
            options,
        })
    }

    /// The inbounds of `services`, each once, in id order.
    pub fn inbounds_of(&self, services: &[i64]) -> Vec<&InboundEntry> {
        let mut ids: Vec<i64> = services
            .iter()
            .filter_map(|s| self.services.get(s))
            .flatten()
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter().filter_map(|id| self.inbounds.get(id)).collect()
    }
}

/// The current `config_revision`.
pub async fn revision(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT value FROM config_revision")
        .fetch_one(&db.reader)
        .await?
        .try_get("value")
}

/// The last catalog loaded, shared by the panel's requests.
#[derive(Debug, Default)]
pub struct CatalogCache {
    current: RwLock<Option<Arc<Catalog>>>,
    /// Held while loading, so that a change is loaded once, not once per waiting request.
    loading: tokio::sync::Mutex<()>,
}

impl CatalogCache {
    /// A catalog at `revision` or newer: the one in memory if it is, else a fresh load.
    pub async fn at_least(&self, db: &Db, revision: i64) -> anyhow::Result<Arc<Catalog>> {
        if let Some(c) = self.current_at(revision) {
            return Ok(c);
        }
        let _loading = self.loading.lock().await;
        if let Some(c) = self.current_at(revision) {
            return Ok(c);
        }
        let fresh = Arc::new(Catalog::load(db).await?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    fn current_at(&self, revision: i64) -> Option<Arc<Catalog>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|c| c.revision >= revision)
            .cloned()
    }
}
