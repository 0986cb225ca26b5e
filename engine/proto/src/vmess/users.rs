//! The users of one VMess inbound and the auth ID that names one of them.
//!
//! ```text
//! Auth ID = AES-128-ECB(KDF16(cmdKey, "AES Auth ID Encryption"),
//!     +-------------------+---------+-----------------------------+
//!     | timestamp i64 BE  | rand 4B | CRC32 (IEEE) of the first 12 |
//!     +-------------------+---------+-----------------------------+)
//! cmdKey = MD5(UUID || "c48619fe-8f02-49e0-b9e9-edf763e17e21")
//! ```

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use md5::{Digest, Md5};

use super::kdf::kdf16;
use super::{ConfigError, PeerError, UserId, MAX_TIME_DIFF};
use crate::directory::{Directory, Roster};

const CMD_KEY_SALT: &[u8] = b"c48619fe-8f02-49e0-b9e9-edf763e17e21";
const AUTH_ID_SALT: &[u8] = b"AES Auth ID Encryption";

/// The key a VMess user's requests are sealed under: `MD5(UUID || fixed salt)`.
pub fn cmd_key(uuid: &[u8; 16]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(uuid);
    h.update(CMD_KEY_SALT);
    h.finalize().into()
}

fn auth_id_key(cmd_key: &[u8; 16]) -> GenericArray<u8, aes::cipher::consts::U16> {
    GenericArray::from(kdf16(cmd_key, &[AUTH_ID_SALT]))
}

/// Client side: the auth ID for `cmd_key` at time `now` with the caller's 4 random bytes.
pub fn seal_auth_id(cmd_key: &[u8; 16], now: u64, random: [u8; 4]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&now.to_be_bytes());
    block[8..12].copy_from_slice(&random);
    let crc = crc32fast::hash(&block[..12]);
    block[12..].copy_from_slice(&crc.to_be_bytes());
    let cipher = aes::Aes128Enc::new(&auth_id_key(cmd_key));
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block));
    block
}

#[derive(Clone)]
struct VmessUser {
    id: UserId,
    cmd_key: [u8; 16],
    auth: aes::Aes128Dec,
}

/// Every user of one VMess inbound.
///
/// An auth ID is matched by decrypting it under each user's auth key (one AES block and a
/// CRC32 per user), starting with a caller-supplied hint (the user last seen from the same
/// source address), as Xray does: the cost of a handshake grows with the number of users.
/// Cheap to clone and to change one user at a time ([`crate::directory`]).
#[derive(Clone, Default)]
pub struct VmessUsers {
    users: Roster<VmessUser>,
    uuids: Directory<[u8; 16]>,
}

impl VmessUsers {
    /// Builds the table from `(id, uuid)` pairs (see [`crate::vless::parse_user_id`]).
    pub fn new(
        users: impl IntoIterator<Item = (UserId, [u8; 16])>,
    ) -> Result<VmessUsers, (UserId, ConfigError)> {
        let mut table = VmessUsers::default();
        for (id, uuid) in users {
            if table.uuids.get(&uuid).is_some() {
                return Err((id, ConfigError::DuplicateUser));
            }
            table.insert(id, uuid)?;
        }
        Ok(table)
    }

    /// Gives user `id` this UUID (replacing theirs); fails, changing nothing, when another
    /// user has it.
    pub fn insert(&mut self, id: UserId, uuid: [u8; 16]) -> Result<(), (UserId, ConfigError)> {
        if self.uuids.key_of(id) == Some(&uuid) {
            return Ok(());
        }
        self.uuids
            .insert(id, uuid)
            .map_err(|_| (id, ConfigError::DuplicateUser))?;
        let cmd_key = cmd_key(&uuid);
        self.users.insert(
            id,
            VmessUser {
                id,
                cmd_key,
                auth: aes::Aes128Dec::new(&auth_id_key(&cmd_key)),
            },
        );
        Ok(())
    }

    /// Removes user `id`; returns whether they were here.
    pub fn remove(&mut self, id: UserId) -> bool {
        self.uuids.remove(id);
        self.users.remove(id, |u| u.id).is_some()
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.users.contains(id)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Finds the user whose key opens `auth_id` with a timestamp within [`MAX_TIME_DIFF`] of
    /// `now`; returns the user and its command key. A user whose key opens it with a
    /// timestamp out of the window is reported only if no other user matches.
    pub(crate) fn find(
        &self,
        auth_id: &[u8; 16],
        now: u64,
        hint: Option<UserId>,
    ) -> Result<(UserId, [u8; 16]), PeerError> {
        let order = self.users.first_then_rest(hint);
        let mut stale = None;
        for user in order {
            let mut block = GenericArray::from(*auth_id);
            user.auth.decrypt_block(&mut block);
            if crc32fast::hash(&block[..12]).to_be_bytes() != block[12..] {
                continue;
            }
            let sent = i64::from_be_bytes(block[..8].try_into().expect("8 bytes"));
            match u64::try_from(sent) {
                Ok(sent) if sent.abs_diff(now) <= MAX_TIME_DIFF => {
                    return Ok((user.id, user.cmd_key))
                }
                _ => stale = Some(PeerError::StaleTimestamp { got: sent, now }),
            }
        }
        Err(stale.unwrap_or(PeerError::BadAuth))
    }
}
