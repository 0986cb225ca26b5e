//! The keys of one inbound's users, arranged for fast lookup during a handshake.

use super::crypto::{BlockCipher, Key, XChaCha};
use super::{ConfigError, Method};
use crate::directory::{Directory, Roster};

/// How the engine names a user inside the codecs: an index it assigns.
pub type UserId = u32;

#[derive(Clone)]
pub(crate) struct UserEntry {
    pub(crate) id: UserId,
    pub(crate) key: Key,
    /// AES block cipher under the user's PSK (2022 AES UDP separate headers). Boxed, like
    /// `xchacha`: most methods have neither, and 10 000 users' tables should not carry a key
    /// schedule's worth of empty space each.
    pub(crate) block: Option<Box<BlockCipher>>,
    /// XChaCha20-Poly1305 under the user's PSK (2022 ChaCha UDP).
    pub(crate) xchacha: Option<Box<XChaCha>>,
}

/// Every user key of one Shadowsocks inbound.
///
/// With a server identity PSK (SIP023, AES 2022 only) a user is found in O(1) from the identity
/// header. Without one, users are found by trial decryption of the first header chunk, starting
/// with a caller-supplied hint (the user last seen from the same source address), which makes
/// the common case a single attempt.
///
/// Cheap to clone and to change one user at a time ([`crate::directory`]).
#[derive(Clone)]
pub struct UserKeys {
    pub(crate) method: Method,
    pub(crate) identity: Option<Identity>,
    users: Roster<UserEntry>,
    /// Users by the hash of their key (identity headers; also what makes keys unique).
    by_identity_hash: Directory<[u8; 16]>,
}

#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) psk: Key,
    pub(crate) block: BlockCipher,
}

impl UserKeys {
    /// Builds the table. `server_psk` (base64) turns on identity headers for AES 2022 methods.
    /// Each user is `(id, password)`, the password being a base64 PSK for 2022 methods.
    pub fn new<'a>(
        method: Method,
        server_psk: Option<&str>,
        users: impl IntoIterator<Item = (UserId, &'a str)>,
    ) -> Result<UserKeys, (Option<UserId>, ConfigError)> {
        let identity = match server_psk {
            None => None,
            Some(_) if !method.supports_identity_headers() => {
                return Err((None, ConfigError::NoIdentityHeaders(method.name())))
            }
            Some(psk) => {
                let psk = Key::from_base64(method, psk).map_err(|e| (None, e))?;
                let block = BlockCipher::new(psk.as_bytes());
                Some(Identity { psk, block })
            }
        };
        let mut table = UserKeys {
            method,
            identity,
            users: Roster::default(),
            by_identity_hash: Directory::default(),
        };
        for (id, password) in users {
            table.insert(id, password).map_err(|e| (Some(id), e))?;
        }
        Ok(table)
    }

    /// Gives user `id` the key `password` names (replacing theirs); fails, changing nothing,
    /// when the password is not a key for this method or another user has the same key.
    pub fn insert(&mut self, id: UserId, password: &str) -> Result<(), ConfigError> {
        let key = Key::from_password(self.method, password)?;
        let hash = key.identity_hash();
        if self.by_identity_hash.key_of(id) == Some(&hash) {
            return Ok(());
        }
        self.by_identity_hash
            .insert(id, hash)
            .map_err(|_| ConfigError::DuplicateKey)?;
        let block = (self.method.is_2022() && self.method.supports_identity_headers())
            .then(|| Box::new(BlockCipher::new(key.as_bytes())));
        let xchacha =
            (self.method == Method::Blake3Chacha20Poly1305).then(|| Box::new(XChaCha::new(&key)));
        self.users.insert(
            id,
            UserEntry {
                id,
                key,
                block,
                xchacha,
            },
        );
        Ok(())
    }

    /// Removes user `id`; returns whether they were here.
    pub fn remove(&mut self, id: UserId) -> bool {
        self.by_identity_hash.remove(id);
        self.users.remove(id, |u| u.id).is_some()
    }

    /// The method every key here is for.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether user `id` has a key here.
    pub fn contains(&self, id: UserId) -> bool {
        self.users.contains(id)
    }

    /// Whether identity headers are in use.
    pub fn uses_identity_headers(&self) -> bool {
        self.identity.is_some()
    }

    pub(crate) fn by_identity_hash(&self, hash: &[u8; 16]) -> Option<&UserEntry> {
        self.users.get(self.by_identity_hash.get(hash)?)
    }

    pub(crate) fn get(&self, id: UserId) -> Option<&UserEntry> {
        self.users.get(id)
    }

    /// Users in trial order: the hinted user first, then the rest.
    pub(crate) fn trial_order(&self, hint: Option<UserId>) -> impl Iterator<Item = &UserEntry> {
        self.users.first_then_rest(hint)
    }
}
