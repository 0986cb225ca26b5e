//! XUDP GlobalIDs: full-cone UDP across reconnects, as Xray's Mux.Cool server keeps it.
//!
//! An XUDP client names each of its local UDP sockets with an 8-byte GlobalID in the New frame
//! that opens the session for it. A session opened with one keeps its outbound socket (and so
//! its public port) beyond its own end: the socket is parked for [`PARKED_FOR`], while the
//! kernel queues what arrives for it, and the next New frame from the same user with the same
//! GlobalID, on any connection and any worker, takes it over together with those replies. A
//! New frame naming a GlobalID that a live session holds takes the socket from that session:
//! the client has moved to a new connection, and the old one may not know it yet.
//!
//! ```text
//!  New(G) ─► claim(user, G) ─┬─ nothing held ─────► a fresh socket ────────┐
//!                            ├─ Parked(socket) ───► that socket ───────────┼─► session: Active(G)
//!                            └─ Active(holder) ───► the holder's socket ───┘      │ ends
//!                                                   (a fresh one if it does       ▼
//!                                                    not come within 2 s)    release ─► Parked(socket)
//!                                                                            (or to the claimer
//!                                                                             that took G meanwhile)
//! ```
//!
//! Sessions are keyed by user and GlobalID, so one user cannot reach another's socket, nor
//! take more than [`MAX_PER_USER`] of the registry's places: a user at that share who claims
//! another GlobalID has their parked socket nearest to expiry closed for it (or, with every
//! place held by a live session, gets an untracked socket). The registry is the engine's,
//! behind a mutex: it is touched when a session with a GlobalID
//! opens or ends, never per packet. Parked sockets are closed by [`Registry::sweep`] once they
//! expire (worker 0's clock task calls it) and by [`Registry::clear`] when the engine stops.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::runtime;

/// How long a session's socket outlives the session (Xray keeps it a minute).
pub(crate) const PARKED_FOR: Duration = Duration::from_secs(60);
/// How long a claim waits for a live holder to hand its socket over.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// Most GlobalIDs tracked at once (held or parked); sessions beyond get untracked sockets.
const MAX_ENTRIES: usize = 16 * 1024;
/// Most GlobalIDs one user may have tracked at once (an XUDP client has one per local UDP
/// socket): a sixteenth of the registry, so that one user cannot fill it for the others.
const MAX_PER_USER: usize = MAX_ENTRIES / 16;
/// Least time between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

type Key = (String, [u8; 8]);

enum Entry {
    /// A live session holds the GlobalID.
    Active(Arc<Handover>),
    /// No session: the socket waits (with whatever arrived for it) until `until`.
    Parked { socket: OwnedFd, until: Instant },
}

/// Between a session holding a GlobalID and a claim that takes it over.
#[derive(Default)]
pub(crate) struct Handover {
    /// Set by the claim: the holder is to give its socket up.
    wanted: AtomicBool,
    /// Wakes the holder once `wanted` is set.
    want: event_listener::Event,
    /// What the holder gave: its socket, or `None` when it had none to give.
    given: Mutex<Option<Option<OwnedFd>>>,
    /// Wakes the claim once `given` is set.
    gave: event_listener::Event,
}

impl Handover {
    /// Resolves when a claim wants the socket.
    pub(crate) async fn wanted(&self) {
        loop {
            if self.wanted.load(Ordering::Acquire) {
                return;
            }
            let listener = self.want.listen();
            if self.wanted.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    fn want(&self) {
        self.wanted.store(true, Ordering::Release);
        self.want.notify(usize::MAX);
    }

    fn give(&self, socket: Option<OwnedFd>) {
        *self.given.lock().expect("not poisoned") = Some(socket);
        self.gave.notify(usize::MAX);
    }

    async fn taken(&self) -> Option<OwnedFd> {
        loop {
            if let Some(socket) = self.given.lock().expect("not poisoned").take() {
                return socket;
            }
            let listener = self.gave.listen();
            if let Some(socket) = self.given.lock().expect("not poisoned").take() {
                return socket;
            }
            listener.await;
        }
    }
}

/// A session's hold on its user's GlobalID; [`Registry::release`] it when the session ends.
pub(crate) struct Hold {
    key: Key,
    handover: Arc<Handover>,
}

impl Hold {
    /// Resolves when another session claims the GlobalID.
    pub(crate) async fn wanted(&self) {
        self.handover.wanted().await
    }
}

/// The engine's GlobalIDs.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Each user's part of `entries`.
    users: HashMap<String, Share>,
    swept: Option<Instant>,
}

/// A user's entries: how many, and their parked ones by expiry.
#[derive(Default)]
struct Share {
    count: usize,
    parked: BTreeSet<(Instant, [u8; 8])>,
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        self.swept = Some(now);
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Parked { until, .. } if *until <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove(key);
        }
    }

    fn insert(&mut self, key: Key, entry: Entry) -> Option<Entry> {
        let parked_until = match &entry {
            Entry::Parked { until, .. } => Some(*until),
            Entry::Active(_) => None,
        };
        let previous = self.entries.insert(key.clone(), entry);
        let share = self.users.entry(key.0).or_default();
        match &previous {
            None => share.count += 1,
            Some(Entry::Parked { until, .. }) => {
                share.parked.remove(&(*until, key.1));
            }
            Some(Entry::Active(_)) => {}
        }
        if let Some(until) = parked_until {
            share.parked.insert((until, key.1));
        }
        previous
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if let Some(share) = self.users.get_mut(&key.0) {
            share.count -= 1;
            if let Entry::Parked { until, .. } = &entry {
                share.parked.remove(&(*until, key.1));
            }
            if share.count == 0 {
                self.users.remove(&key.0);
            }
        }
        Some(entry)
    }

    /// Makes room for a new GlobalID of `user` (see the module's docs): whether there is.
    fn room_for(&mut self, user: &str) -> bool {
        if self.entries.len() >= MAX_ENTRIES {
            self.sweep(Instant::now());
        }
        if let Some(share) = self.users.get(user).filter(|s| s.count >= MAX_PER_USER) {
            let Some(&(_, id)) = share.parked.first() else {
                return false;
            };
            self.remove(&(user.to_owned(), id));
        }
        self.entries.len() < MAX_ENTRIES
    }
}

/// A claim under way: should it be dropped while it waits for the holder's socket, its entry
/// goes (nothing else would ever remove an entry no session holds).
struct Claiming<'a> {
    registry: &'a Registry,
    key: Option<Key>,
    handover: &'a Arc<Handover>,
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut inner = self.registry.lock();
            let ours = matches!(
                inner.entries.get(&key),
                Some(Entry::Active(h)) if Arc::ptr_eq(h, self.handover)
            );
            if ours {
                inner.remove(&key);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// Claims GlobalID `id` for a new session of `user`: the hold, and the socket the
    /// GlobalID had (parked, or handed over by the session that held it) if any. `None` when
    /// the registry, or the user's share of it, is full: the session goes untracked.
    pub(crate) async fn claim(&self, user: &str, id: [u8; 8]) -> Option<(Hold, Option<OwnedFd>)> {
        let key = (user.to_owned(), id);
        let handover = Arc::new(Handover::default());
        let previous = {
            let mut inner = self.lock();
            if !inner.entries.contains_key(&key) && !inner.room_for(user) {
                return None;
            }
            inner.insert(key.clone(), Entry::Active(Arc::clone(&handover)))
        };
        let socket = match previous {
            None => None,
            Some(Entry::Parked { socket, .. }) => Some(socket),
            Some(Entry::Active(holder)) => {
                let mut claiming = Claiming {
                    registry: self,
                    key: Some(key.clone()),
                    handover: &handover,
                };
                holder.want();
                let taken = runtime::timeout(HANDOVER_WAIT, holder.taken())
                    .await
                    .flatten();
                claiming.key = None;
                taken
            }
        };
        Some((Hold { key, handover }, socket))
    }

    /// Ends `hold`: `socket` (the session's socket, duplicated) is parked until
    /// [`PARKED_FOR`] from `now`, or goes to the claim that took the GlobalID meanwhile.
    pub(crate) fn release(&self, hold: Hold, socket: Option<OwnedFd>, now: Instant) {
        let mut inner = self.lock();
        match inner.entries.get(&hold.key) {
            Some(Entry::Active(h)) if Arc::ptr_eq(h, &hold.handover) => match socket {
                Some(socket) => {
                    let until = now + PARKED_FOR;
                    inner.insert(hold.key, Entry::Parked { socket, until });
                }
                None => {
                    inner.remove(&hold.key);
                }
            },
            // Claimed since: the claim waits for the socket (or has given up waiting, and
            // the socket closes with the handover).
            _ => {
                drop(inner);
                hold.handover.give(socket);
            }
        }
    }

    /// Closes the parked sockets that expired by `now` (at most every few seconds).
    pub(crate) fn sweep(&self, now: Instant) {
        let mut inner = self.lock();
        if inner
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        inner.sweep(now);
    }

    /// Closes every parked socket and forgets every GlobalID: the engine has stopped.
    pub(crate) fn clear(&self) {
        // Taken under the lock, closed after it.
        let entries = {
            let mut inner = self.lock();
            inner.users.clear();
            std::mem::take(&mut inner.entries)
        };
        drop(entries);
    }

    /// GlobalIDs held or parked (checking that every user's share adds up to them).
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.lock();
        let parked = inner
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Parked { .. }))
            .count();
        let shares = inner.users.values();
        assert_eq!(
            shares.clone().map(|s| s.count).sum::<usize>(),
            inner.entries.len()
        );
        assert_eq!(shares.map(|s| s.parked.len()).sum::<usize>(), parked);
        inner.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> OwnedFd {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into()
    }

    fn port(fd: &OwnedFd) -> u16 {
        let s = std::net::UdpSocket::from(fd.try_clone().unwrap());
        s.local_addr().unwrap().port()
    }

    /// Claims `id` for `user` (nothing parked for it yet) and parks a fresh socket under it
    /// at `at`; returns the socket's port.
    async fn park(r: &Registry, user: &str, id: [u8; 8], at: Instant) -> u16 {
        let (hold, got) = r.claim(user, id).await.unwrap();
        assert!(got.is_none());
        let s = socket();
        let p = port(&s);
        r.release(hold, Some(s), at);
        p
    }

    #[test]
    fn a_released_socket_is_parked_for_the_same_user_and_id_only() {
        glommio::LocalExecutor::default().run(async {
            let r = Registry::default();
            let now = Instant::now();
            let p = park(&r, "alice", [1; 8], now).await;
            // Another user, another id: nothing.
            let (other, got) = r.claim("bob", [1; 8]).await.unwrap();
            assert!(got.is_none());
            r.release(other, None, now);
            let (other, got) = r.claim("alice", [2; 8]).await.unwrap();
            assert!(got.is_none());
            r.release(other, None, now);
            assert_eq!(r.len(), 1);
            let (hold, got) = r.claim("alice", [1; 8]).await.unwrap();
            assert_eq!(port(&got.unwrap()), p);
            r.release(hold, None, now);
            assert_eq!(r.len(), 0);
        });
    }

    /// One user's share: at [`MAX_PER_USER`], a new GlobalID closes their parked socket
    /// nearest to expiry; with every place held by a live session it goes untracked. Another
    /// user still gets places.
    #[test]
    fn one_user_takes_at_most_their_share() {
        glommio::LocalExecutor::default().run(async {
            let r = Registry::default();
            let t0 = Instant::now();
            let id = |i: usize| (i as u64).to_be_bytes();
            for i in 0..MAX_PER_USER {
                // Each parked a little later than the one before: 0 expires first.
                park(&r, "alice", id(i), t0 + Duration::from_millis(i as u64)).await;
            }
            assert_eq!(r.len(), MAX_PER_USER);
            let (newest, _) = r.claim("alice", id(MAX_PER_USER)).await.unwrap();
            assert_eq!(r.len(), MAX_PER_USER, "one parked socket made room");
            let (hold1, got) = r.claim("alice", id(1)).await.unwrap();
            assert!(got.is_some(), "the others are kept");
            // A GlobalID no longer tracked is a new one: it makes room in turn (id 2 goes).
            let (hold, got) = r.claim("alice", id(0)).await.unwrap();
            assert!(got.is_none(), "the oldest parked socket was the one closed");
            // Everything alice has is now live, or parked only after her live ones: park
            // nothing more, hold every place, and the next GlobalID is untracked.
            drop((hold, hold1, newest));
            let r = Registry::default();
            let mut holds = Vec::new();
            for i in 0..MAX_PER_USER {
                holds.push(r.claim("alice", id(i)).await.unwrap().0);
            }
            assert!(r.claim("alice", id(MAX_PER_USER)).await.is_none());
            assert!(
                r.claim("bob", id(0)).await.is_some(),
                "another user's place"
            );
            for hold in holds {
                r.release(hold, None, t0);
            }
            assert_eq!(r.len(), 1);
        });
    }

    /// A claim dropped while it waits for the holder's socket (its connection closed) leaves
    /// no entry behind: nothing would ever remove it, and it would keep one of the user's
    /// places for good.
    #[test]
    fn a_claim_dropped_while_it_waits_leaves_no_entry() {
        glommio::LocalExecutor::default().run(async {
            let r = Registry::default();
            let (holder, _) = r.claim("alice", [7; 8]).await.unwrap();
            {
                let claim = std::pin::pin!(r.claim("alice", [7; 8]));
                let polled = futures_lite::future::poll_once(claim).await;
                assert!(polled.is_none(), "it waits for the holder");
            }
            assert_eq!(r.len(), 0);
            r.release(holder, Some(socket()), Instant::now());
            assert_eq!(r.len(), 0);
        });
    }

    #[test]
    fn parked_sockets_expire() {
        glommio::LocalExecutor::default().run(async {
            let r = Registry::default();
            let now = Instant::now();
            park(&r, "alice", [1; 8], now).await;
            r.sweep(now + PARKED_FOR - Duration::from_secs(1));
            assert_eq!(r.len(), 1);
            // Within SWEEP_EVERY of the last sweep: not yet looked at.
            r.sweep(now + PARKED_FOR + Duration::from_secs(1));
            assert_eq!(r.len(), 1);
            r.sweep(now + PARKED_FOR + SWEEP_EVERY);
            assert_eq!(r.len(), 0);
            let (_, got) = r.claim("alice", [1; 8]).await.unwrap();
            assert!(got.is_none());
        });
    }

    #[test]
    fn a_claim_takes_the_socket_from_its_live_holder() {
        glommio::LocalExecutor::default().run(async {
            let r = Registry::default();
            let (holder, _) = r.claim("alice", [7; 8]).await.unwrap();
            let s = socket();
            let p = port(&s);
            let claim = r.claim("alice", [7; 8]);
            let hand_over = async {
                holder.wanted().await;
                r.release(holder, Some(s), Instant::now());
            };
            let (claimed, ()) = futures_lite::future::zip(claim, hand_over).await;
            let (hold, got) = claimed.unwrap();
            let got = got.expect("handed over");
            assert_eq!(port(&got), p);
            // The new hold parks it in turn.
            r.release(hold, Some(got), Instant::now());
            let (_, again) = r.claim("alice", [7; 8]).await.unwrap();
            assert_eq!(port(&again.unwrap()), p);
        });
    }
}
