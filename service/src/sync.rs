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

/// Pushes every inbound and user to the engine.
pub async fn full(state: &AppState) -> anyhow::Result<()> {
    let inbounds: Vec<InboundConfig> = db::inbounds(&state.db)
        .await?
        .iter()
        .map(|(_, _, _, c)| parse_inbound(c))
        .collect::<Result<_, _>>()?;
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.apply_inbounds(inbounds)).await??;
    let users = db::all_users(&state.db).await?;
    let tags = db::user_inbound_tags(&state.db).await?;
    apply_users(state, &users, &tags).await
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
    for u in users {
        match user_spec(u, tags.get(&u.id).map(Vec::as_slice).unwrap_or(&[]), now) {
            Some(spec) => upsert.push(spec),
            None => remove.push(u.username.clone()),
        }
    }
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        engine.upsert_users(upsert)?;
        engine.remove_users(&remove)?;
        Ok(())
    })
    .await??;
    Ok(())
}

/// Pushes one user's current state (or their removal, if `row` is `None`).
pub async fn user(state: &AppState, username: &str) -> anyhow::Result<()> {
    match db::user_by_name(&state.db, username).await? {
        Some(row) => {
            // This user's inbounds only: reading everyone's made each change O(users).
            let tags =
                HashMap::from([(row.id, db::inbound_tags_of_user(&state.db, row.id).await?)]);
            apply_users(state, &[row], &tags).await
        }
        None => {
            let engine = state.engine.clone();
            let name = username.to_owned();
            tokio::task::spawn_blocking(move || engine.remove_users(&[name])).await??;
            Ok(())
        }
    }
}
