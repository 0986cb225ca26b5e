//! User tables that change one user at a time.
//!
//! An inbound's user table is read on every handshake and replaced whole (the engine swaps an
//! `Arc`) whenever a user is added, changed or removed. Rebuilding it from every user's
//! credential made each change cost O(users): at 10 000 users, adding one meant deriving
//! 10 000 keys. The tables here are persistent (`imbl`'s hash array mapped tries and RRB
//! vectors): a clone is O(1) and shares structure with the original, and a change copies only
//! the O(log users) nodes on its path. The control path clones the installed table, applies a
//! batch of changes to the clone, and installs the clone; readers keep the old one meanwhile.

use std::borrow::Borrow;
use std::hash::Hash;

use crate::shadowsocks::UserId;

/// Why a key cannot be given to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the key already belongs to user {owner}")]
pub struct KeyTaken {
    /// The user who holds the key.
    pub owner: UserId,
}

/// A two-way map between users and the keys that name them on the wire (VLESS UUIDs, Trojan
/// password hashes, Hysteria2 passwords): each user has at most one key and each key at most
/// one user.
#[derive(Clone, Debug)]
pub struct Directory<K: Clone + Hash + Eq> {
    by_key: imbl::HashMap<K, UserId>,
    by_id: imbl::HashMap<UserId, K>,
}

impl<K: Clone + Hash + Eq> Default for Directory<K> {
    fn default() -> Self {
        Directory {
            by_key: imbl::HashMap::new(),
            by_id: imbl::HashMap::new(),
        }
    }
}

impl<K: Clone + Hash + Eq> Directory<K> {
    /// The user holding `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<UserId>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_key.get(key).copied()
    }

    /// The key user `id` holds.
    pub fn key_of(&self, id: UserId) -> Option<&K> {
        self.by_id.get(&id)
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Gives `key` to user `id`, replacing the key `id` held. Fails, changing nothing, when
    /// another user holds `key`.
    pub fn insert(&mut self, id: UserId, key: K) -> Result<(), KeyTaken> {
        match self.by_key.get(&key) {
            Some(&owner) if owner == id => return Ok(()),
            Some(&owner) => return Err(KeyTaken { owner }),
            None => {}
        }
        if let Some(old) = self.by_id.insert(id, key.clone()) {
            self.by_key.remove(&old);
        }
        self.by_key.insert(key, id);
        Ok(())
    }

    /// Removes user `id`; returns their key.
    pub fn remove(&mut self, id: UserId) -> Option<K> {
        let key = self.by_id.remove(&id)?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Users with a per-user entry kept in a vector, for tables a handshake scans in order (VMess
/// auth IDs, Shadowsocks trial decryption): an index by user id, and removal by moving the last
/// entry into the hole.
#[derive(Clone, Debug)]
pub struct Roster<E: Clone> {
    entries: imbl::Vector<E>,
    index: imbl::HashMap<UserId, usize>,
}

impl<E: Clone> Default for Roster<E> {
    fn default() -> Self {
        Roster {
            entries: imbl::Vector::new(),
            index: imbl::HashMap::new(),
        }
    }
}

impl<E: Clone> Roster<E> {
    /// User `id`'s entry.
    pub fn get(&self, id: UserId) -> Option<&E> {
        self.index.get(&id).map(|&i| &self.entries[i])
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.index.contains_key(&id)
    }

    /// Sets user `id`'s entry (added at the end, or replaced in place).
    pub fn insert(&mut self, id: UserId, entry: E) {
        match self.index.get(&id) {
            Some(&i) => {
                self.entries.set(i, entry);
            }
            None => {
                self.index.insert(id, self.entries.len());
                self.entries.push_back(entry);
            }
        }
    }

    /// Removes user `id`; returns their entry. The last entry takes its place, so the order of
    /// the others changes; `id_of` names an entry's user.
    pub fn remove(&mut self, id: UserId, id_of: impl Fn(&E) -> UserId) -> Option<E> {
        let i = self.index.remove(&id)?;
        let last = self.entries.pop_back().expect("indexed entries exist");
        if i == self.entries.len() {
            return Some(last);
        }
        self.index.insert(id_of(&last), i);
        Some(self.entries.set(i, last))
    }

    /// Every entry, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.entries.iter()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in trial order: user `first`'s (if present) and then the rest.
    pub fn first_then_rest(&self, first: Option<UserId>) -> impl Iterator<Item = &E> {
        let first = first.and_then(|id| self.index.get(&id).copied());
        first.map(|i| &self.entries[i]).into_iter().chain(
            self.entries
                .iter()
                .enumerate()
                .filter(move |(i, _)| Some(*i) != first)
                .map(|(_, e)| e),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_is_one_to_one() {
        let mut d = Directory::default();
        d.insert(1, "a").unwrap();
        d.insert(2, "b").unwrap();
        assert_eq!(d.insert(3, "a"), Err(KeyTaken { owner: 1 }));
        assert_eq!(d.len(), 2);
        // Re-keying frees the old key.
        d.insert(1, "c").unwrap();
        assert_eq!(d.get("a"), None);
        assert_eq!(d.get("c"), Some(1));
        d.insert(3, "a").unwrap();
        // Same key again: nothing changes.
        d.insert(3, "a").unwrap();
        assert_eq!(d.remove(2), Some("b"));
        assert_eq!(d.remove(2), None);
        assert_eq!(d.get("b"), None);
        assert_eq!((d.len(), d.contains(1), d.contains(2)), (2, true, false));
    }

    #[test]
    fn a_clone_is_a_snapshot() {
        let mut d = Directory::default();
        for i in 0..1000 {
            d.insert(i, i * 7).unwrap();
        }
        let before = d.clone();
        d.remove(5);
        d.insert(5000, 35).unwrap();
        assert_eq!(before.get(&35), Some(5));
        assert_eq!(d.get(&35), Some(5000));
    }

    #[test]
    fn roster_removal_keeps_the_index_true() {
        let mut r = Roster::default();
        for id in 0..10u32 {
            r.insert(id, (id, id * 10));
        }
        let id_of = |e: &(u32, u32)| e.0;
        assert_eq!(r.remove(3, id_of), Some((3, 30)));
        assert_eq!(r.remove(9, id_of), Some((9, 90)));
        assert_eq!(r.remove(3, id_of), None);
        r.insert(4, (4, 44));
        assert_eq!(r.len(), 8);
        for id in [0, 1, 2, 4, 5, 6, 7, 8] {
            let want = if id == 4 { 44 } else { id * 10 };
            assert_eq!(r.get(id), Some(&(id, want)), "user {id}");
        }
        assert_eq!(r.first_then_rest(Some(8)).next(), Some(&(8, 80)));
        assert_eq!(r.first_then_rest(Some(8)).count(), 8);
        assert_eq!(r.first_then_rest(Some(3)).count(), 8);
        loop {
            let Some(&(id, _)) = r.iter().next() else {
                break;
            };
            r.remove(id, id_of);
        }
        assert!(r.is_empty());
    }
}
