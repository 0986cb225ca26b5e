//! Keeping the engine in step with the database: inbounds from the `inbounds` table, users
//! (with the credentials derived from their key) on the inbounds of their services.
//!
//! Credentials derive from the user's key as Marzneshin derives them by default
//! (`AUTH_GENERATION_ALGORITHM=xxh128`), so links exported from an existing Marzneshin keep
//! working. Checked against marzneshin/marzneshin `app/utils/keygen.py` (`gen_uuid`,
//! `gen_password`, used for every protocol by `create_config` in `app/utils/share.py`) and
//! marzneshin/marznode `marznode/utils/key_gen.py` (what the nodes give Xray and sing-box):
//!
//! - VLESS and VMess: `uuid.UUID(bytes=xxh128(key).digest())`, the 16 bytes of the key's
//!   XXH3-128 digest (big-endian, as Python's `xxhash` gives it) written as a UUID;
//! - Trojan, Hysteria2 and Shadowsocks AEAD (2017): `xxh128(key).hexdigest()`, the same digest
//!   in hex.
//!
//! Shadowsocks 2022 has no derivation in Marzneshin: marznode hands the same hex password to
//! every Shadowsocks inbound (its Xray backend offers only the 2017 methods, and sing-box
//! refuses a 2022 key that does not decode to the method's key size). A 2022 key must be
//! base64 of exactly the method's key size, so ours is our own choice: for 16-byte methods
//! the same digest (base64), for 32-byte methods SHA-256 of the key (base64).

use std::collections::HashMap;

use base64::Engine as _;
use engine::config::{InboundConfig, ProtocolConfig};
use engine::{Limits, UserInbound, UserSpec};
use sha2::Digest;

use crate::db::{self, UserRow};
use crate::serve::AppState;

/// The 16-byte XXH3-128 digest of a key, big-endian as Python's `xxhash` gives it.
pub fn key_digest(key: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes()).to_be_bytes()
}

/// A user's credential on an inbound.
pub fn credential(inbound: &InboundConfig, key: &str) -> String {
    match &inbound.protocol {
        ProtocolConfig::Shadowsocks(ss) => {
            let method = ss.method();
            let b64 = base64::engine::general_purpose::STANDARD;
            match (method.is_2022(), method.key_len()) {
                (false, _) => hex(&key_digest(key)),
                (true, 16) => b64.encode(key_digest(key)),
                (true, _) => b64.encode(sha2::Sha256::digest(key.as_bytes())),
            }
        }
        // VLESS and VMess: the key's digest as a UUID; Trojan: its hex.
        ProtocolConfig::Vless(_) | ProtocolConfig::Vmess(_) => {
            let d = hex(&key_digest(key));
            format!(
                "{}-{}-{}-{}-{}",
                &d[..8],
                &d[8..12],
                &d[12..16],
                &d[16..20],
                &d[20..]
            )
        }
        // Trojan and Hysteria2: the digest's hex (marznode's `generate_password`).
        ProtocolConfig::Trojan(_) | ProtocolConfig::Hysteria2(_) => hex(&key_digest(key)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a stored inbound config.
pub fn parse_inbound(config: &str) -> anyhow::Result<InboundConfig> {
    Ok(serde_json::from_str(config)?)
}

/// What the engine should hold for `user`: `Some(spec)` if they may connect.
pub fn user_spec(user: &UserRow, inbounds: &[(String, String)], now: i64) -> Option<UserSpec> {
    if !user.may_connect(now) {
        return None;
    }
    let inbounds = inbounds
        .iter()
        .filter_map(|(tag, config)| {
            let c = parse_inbound(config).ok()?;
            Some(UserInbound {
                tag: tag.clone(),
                password: credential(&c, &user.key),
            })
        })
        .collect();
    Some(UserSpec {
        name: user.username.clone(),
        inbounds,
        limits: Limits::default(),
    })
}

/// What this panel gave its engine. The users allowed to connect (id to name): what the
/// enforcement pass compares the database with, so that it reads and pushes only the users
/// whose access changed, not every user every few seconds. And whose each name was: the
/// engine counts by name, and a name deleted and taken again is another user
/// ([`apply_users`], [`Pushed::owners`]).
#[derive(Default)]
pub struct Pushed {
    allowed: std::sync::Mutex<HashMap<i64, String>>,
    /// Every name given to the engine in this run, with the id of the user it was last given
    /// for (kept after the user is taken off).
    owners: std::sync::Mutex<HashMap<String, i64>>,
}

impl Pushed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, String>> {
        self.allowed.lock().expect("not poisoned")
    }

    /// The user (id) each of `names` was last given to the engine for, where known: what
    /// the engine counts under a name from then on is theirs.
    pub fn owners(&self, names: impl IntoIterator<Item = impl AsRef<str>>) -> HashMap<String, i64> {
        let owners = self.owners.lock().expect("not poisoned");
        names
            .into_iter()
            .filter_map(|n| Some((n.as_ref().to_owned(), *owners.get(n.as_ref())?)))
            .collect()
    }
}

/// Pushes the routing rules, every inbound and every user to the engine, and records the
/// `config_revision` they were read at (taken before the tables, so a change committed
/// meanwhile is given again). Returns the change mark the users were read after: at a start,
/// where the enforcement passes begin ([`changed_users`]).
pub async fn full(state: &AppState) -> anyhow::Result<db::Since> {
    let _turn = state.sync_turn.lock().await;
    let revision = crate::catalog::revision(&state.db).await?;
    let read_at = db::Since {
        revision: db::change_mark(&state.db).await?,
        at: crate::serve::now(),
    };
    // The rules first, so that at a start no user is served before them. Rules that do not
    // compile here (a GeoIP database missing on this host, say) must not stop the inbounds
    // and users from being given: the failure is logged and retried.
    let _ = apply_routing(state).await;
    let inbounds: Vec<InboundConfig> = db::inbounds(&state.db)
        .await?
        .iter()
        .map(|(_, _, _, c)| parse_inbound(c))
        .collect::<Result<_, _>>()?;
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.apply_inbounds(inbounds)).await??;
    let users = db::all_users(&state.db).await?;
    let tags = db::user_inbound_tags(&state.db).await?;
    apply_users(state, &users, &tags).await?;
    state
        .synced_config
        .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
    Ok(read_at)
}

/// Whether the engine holds the stored routing rules.
#[derive(Debug, Default)]
pub struct RoutingState(std::sync::atomic::AtomicU8);

const ROUTING_NEVER: u8 = 0;
const ROUTING_CURRENT: u8 = 1;
const ROUTING_STALE: u8 = 2;

impl RoutingState {
    /// The engine holds the rules stored when they were last read.
    pub fn is_current(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) == ROUTING_CURRENT
    }

    /// The engine is being given rules that may not end up stored: the next pass gives it
    /// the stored ones unless [`Self::mark_current`] or [`Self::restore`] follows. Returns
    /// the state before, for [`Self::restore`].
    pub(crate) fn mark_stale(&self) -> u8 {
        self.0
            .swap(ROUTING_STALE, std::sync::atomic::Ordering::AcqRel)
    }

    /// The rules the engine was just given are the stored ones.
    pub(crate) fn mark_current(&self) {
        self.0
            .store(ROUTING_CURRENT, std::sync::atomic::Ordering::Release);
    }

    /// The engine refused the rules it was given: it holds what it held before
    /// [`Self::mark_stale`].
    pub(crate) fn restore(&self, was: u8) {
        let _ = self.0.compare_exchange(
            ROUTING_STALE,
            was,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    }
}

/// Gives the engine the stored routing rules, in its turn ([`AppState::sync_turn`]).
pub async fn routing(state: &AppState) -> anyhow::Result<()> {
    let _turn = state.sync_turn.lock().await;
    apply_routing(state).await
}

/// Gives the engine the stored routing rules (none stored: only its built-in block of
/// special ranges); the caller holds [`AppState::sync_turn`]. Rules that do not compile here
/// are logged, and the usage pass tries again ([`RoutingState`]): a running engine keeps the
/// rules it has; an engine that has never had the stored rules (at start) gets a rule denying
/// everything, as a proxy with an invalid configuration serves no one.
pub(crate) async fn apply_routing(state: &AppState) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let result = async {
        let rules = crate::api::routing::load(&state.db).await?;
        let engine = state.engine.clone();
        tokio::task::spawn_blocking(move || engine.set_routing(rules)).await??;
        anyhow::Ok(())
    }
    .await;
    match &result {
        Ok(()) => state.routing.0.store(ROUTING_CURRENT, Ordering::Release),
        Err(e) => {
            let never = state.routing.0.load(Ordering::Acquire) == ROUTING_NEVER;
            if never {
                tracing::error!(
                    "the stored routing rules do not compile here ({e:#}): every connection is \
                     denied until they are replaced (PUT /api/settings/routing) or fixed"
                );
                let deny_all = engine::rules::RulesConfig {
                    default: engine::rules::Action::Deny,
                    ..Default::default()
                };
                let engine = state.engine.clone();
                tokio::task::spawn_blocking(move || engine.set_routing(Some(deny_all))).await??;
            } else {
                tracing::error!(
                    "the stored routing rules do not compile here ({e:#}): the engine keeps \
                     the rules it has"
                );
                state.routing.0.store(ROUTING_STALE, Ordering::Release);
            }
        }
    }
    result
}

/// Brings the engine in step with the users' status as time passes and usage grows (expiry,
/// data limits, activation, resets) and as other panel instances change users. With `since`
/// from the previous pass, only the users who can have changed since are read
/// ([`db::users_changed`], [`db::users_deleted_since`]); without, SQL finds who may connect
/// now and the result is compared with what the engine was given. Either way only the users
/// whose access differs from what the engine was last given are pushed, each decided again
/// from their row as read here, so a change an admin made meanwhile wins. `since` moves on
/// when the pass succeeds; a pass from a mark that fails leaves it where it was, so the next
/// pass reads again every change this one may have missed (a key or services changed
/// through another instance among them). A pass without one moves it on also when the
/// engine refuses a push: it read everyone, and repeating that every few seconds while, say,
/// an inbound this host cannot bind makes a push fail would cost far more than it brings
/// (the full sync that follows the fix gives everyone again).
pub async fn changed_users(state: &AppState, since: &mut Option<db::Since>) -> anyhow::Result<()> {
    let _turn = state.sync_turn.lock().await;
    let now = crate::serve::now();
    // Before the scan: what changes after this is found by the next pass.
    let mark = db::Since {
        revision: db::change_mark(&state.db).await?,
        at: now,
    };
    match db::Since::fresh(*since, now) {
        Some(s) => changed_since(state, s, now).await?,
        None => {
            let result = changed_all(state, now).await;
            // The engine refusing a push moves the mark on; a database error does not (the
            // users between the marks would never be looked at again).
            let refused = result
                .as_ref()
                .err()
                .is_some_and(|e| e.downcast_ref::<engine::EngineError>().is_some());
            if result.is_ok() || refused {
                *since = Some(mark);
            }
            return result;
        }
    }
    *since = Some(mark);
    Ok(())
}

/// [`changed_users`] from a mark: deletions first (a name deleted and created again is then
/// pushed as the new user), then the changed users whose access differs from what was pushed,
/// and those whose key or services changed (their credentials), by any panel instance.
async fn changed_since(state: &AppState, since: db::Since, now: i64) -> anyhow::Result<()> {
    let deleted = db::users_deleted_since(&state.db, since.revision).await?;
    remove_pushed(state, deleted.into_iter().map(|(id, _)| id).collect()).await?;
    let changed = db::users_changed(&state.db, since, now).await?;
    let mut push: Vec<i64> = {
        let pushed = state.pushed.lock();
        changed
            .into_iter()
            .filter(|(id, _, ok)| *ok != pushed.contains_key(id))
            .map(|(id, _, _)| id)
            .collect()
    };
    push.extend(db::users_access_changed(&state.db, since.revision).await?);
    push.sort_unstable();
    push.dedup();
    push_by_id(state, &push).await
}

/// Reads the users `ids` and pushes each as decided again from their row, in slices, so that
/// a mass change does not read every row at once. A slice that fails (a user on an inbound
/// the engine does not have) does not keep the later ones from being pushed, their removals
/// above all; the first error is returned.
async fn push_by_id(state: &AppState, ids: &[i64]) -> anyhow::Result<()> {
    let mut result = Ok(());
    for chunk in ids.chunks(500) {
        let pushed = async {
            let rows = db::users_by_ids(&state.db, chunk).await?;
            let tags = db::inbound_tags_of_users(&state.db, chunk).await?;
            apply_users(state, &rows, &tags).await
        }
        .await;
        if result.is_ok() {
            result = pushed;
        }
    }
    result
}

/// [`changed_users`] without a mark (passes failed for longer than [`db::Since::MAX_AGE`], or
/// the clock jumped): every user who may connect now is pushed again, as their key or
/// services may have changed through another instance unseen, and the pushed users who may
/// not are taken off. Pushing an unchanged user keeps their connections.
async fn changed_all(state: &AppState, now: i64) -> anyhow::Result<()> {
    let allowed = db::connectable_users(&state.db, now).await?;
    let (mut ids, gone): (Vec<i64>, Vec<i64>) = {
        let pushed = state.pushed.lock();
        let gone: Vec<i64> = pushed
            .keys()
            .filter(|id| !allowed.contains_key(id))
            .copied()
            .collect();
        (allowed.keys().copied().collect(), gone)
    };
    // Pushed users who may not connect now (their row may be gone, deleted by another panel
    // instance) are taken off first; the others are read and pushed (or taken off, if their
    // row says so now).
    ids.extend_from_slice(&gone);
    ids.sort_unstable();
    remove_pushed(state, gone).await?;
    push_by_id(state, &ids).await
}

/// Takes the users `ids` off the engine, those of them this panel gave it.
async fn remove_pushed(state: &AppState, ids: Vec<i64>) -> anyhow::Result<()> {
    let deleted: Vec<(i64, String)> = {
        let pushed = state.pushed.lock();
        ids.into_iter()
            .filter_map(|id| Some((id, pushed.get(&id)?.clone())))
            .collect()
    };
    if !deleted.is_empty() {
        let names: Vec<String> = deleted.iter().map(|(_, n)| n.clone()).collect();
        let engine = state.engine.clone();
        tokio::task::spawn_blocking(move || engine.remove_users(&names)).await??;
        let mut pushed = state.pushed.lock();
        for (id, _) in deleted {
            pushed.remove(&id);
        }
    }
    Ok(())
}

/// Pushes the given users' current state to the engine.
pub async fn apply_users(
    state: &AppState,
    users: &[UserRow],
    tags: &HashMap<i64, Vec<(String, String)>>,
) -> anyhow::Result<()> {
    let now = crate::serve::now();
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for u in users {
        match user_spec(u, tags.get(&u.id).map(Vec::as_slice).unwrap_or(&[]), now) {
            Some(spec) => {
                allowed.push((u.id, spec.name.clone()));
                upsert.push(spec);
            }
            None => {
                remove.push(u.username.clone());
                denied.push(u.id);
            }
        }
    }
    // Removals first, and recorded whatever comes of the additions: a user the engine refuses
    // (say, on an inbound it does not have) must not keep the others of the batch connected.
    let engine = state.engine.clone();
    if !remove.is_empty() {
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.remove_users(&remove)).await??;
        let mut pushed = state.pushed.lock();
        for id in denied {
            pushed.remove(&id);
        }
    }
    // A name the engine last had for another user (deleted, and the name taken again): what
    // it counted under the name is that user's, and is recorded against them first (a row
    // that is gone is charged nothing); the new user starts from there.
    let reused: Vec<(String, i64)> = {
        let owners = state.pushed.owners.lock().expect("not poisoned");
        allowed
            .iter()
            .filter_map(|(id, name)| {
                let owner = *owners.get(name)?;
                (owner != *id).then(|| (name.clone(), owner))
            })
            .collect()
    };
    if !reused.is_empty() {
        // Still given as allowed (its removal not seen yet): taken off first.
        let stale: Vec<i64> = {
            let pushed = state.pushed.lock();
            reused
                .iter()
                .filter(|(name, owner)| pushed.get(owner) == Some(name))
                .map(|(_, owner)| *owner)
                .collect()
        };
        remove_pushed(state, stale).await?;
        crate::usage::settle(state, &reused).await?;
    }
    {
        let mut owners = state.pushed.owners.lock().expect("not poisoned");
        for (id, name) in &allowed {
            owners.insert(name.clone(), *id);
        }
    }
    tokio::task::spawn_blocking(move || engine.upsert_users(upsert)).await??;
    state.pushed.lock().extend(allowed);
    Ok(())
}

/// Pushes user `id`'s current state (their removal, if the row is gone).
pub async fn user(state: &AppState, id: i64) -> anyhow::Result<()> {
    let _turn = state.sync_turn.lock().await;
    let rows = db::users_by_ids(&state.db, &[id]).await?;
    if rows.is_empty() {
        return remove_pushed(state, vec![id]).await;
    }
    // This user's inbounds only: reading everyone's made each change O(users).
    let tags = db::inbound_tags_of_users(&state.db, &[id]).await?;
    apply_users(state, &rows, &tags).await
}
