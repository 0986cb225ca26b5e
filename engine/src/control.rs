//! Control operations: applying inbounds and user batches while the engine carries traffic.
//!
//! Every operation runs on the caller's thread under one lock, validates the whole request
//! before changing anything, swaps the read-mostly state that workers consult per handshake
//! (`ArcSwap`ed key tables, the inbound list) and sends workers the messages they act on:
//! `Serve` (adopt a new inbound's sockets) and `Kick` (close a user's connections).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::{InboundConfig, Network};
use crate::counters::Traffic;
use crate::inbound::{Control, InboundShared, InboundSockets, Keys};
use crate::runtime;
use crate::{EngineError, Shared, UserSpec};

/// What identifies an inbound's listener and protocol settings, users excluded: two configs
/// with the same key can keep the same listener and connections.
fn settings_key(c: &InboundConfig) -> String {
    let mut c = c.clone();
    c.protocol.clear_users();
    serde_json::to_string(&c).expect("config serialises")
}

/// Binds one inbound's sockets for every worker: the first bind picks the port (when the
/// configured port is 0) and the rest reuse it.
fn bind(
    c: &InboundConfig,
    workers: usize,
) -> Result<(Vec<InboundSockets>, std::net::SocketAddr), EngineError> {
    let mut addr = c.listen;
    let mut out = Vec::with_capacity(workers);
    let err = |network, addr, source| EngineError::Bind {
        tag: c.tag.clone(),
        network,
        addr,
        source,
    };
    let resolved = |fd: &std::os::fd::OwnedFd, addr| {
        socket2::SockRef::from(fd)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr)
    };
    for _ in 0..workers {
        let mut s = InboundSockets::default();
        if c.listens(Network::Tcp) {
            let fd = runtime::tcp_listener_socket(addr).map_err(|e| err(Network::Tcp, addr, e))?;
            addr = resolved(&fd, addr);
            s.tcp = Some(fd);
        }
        if c.listens(Network::Udp) {
            let fd = runtime::udp_socket(addr).map_err(|e| err(Network::Udp, addr, e))?;
            addr = resolved(&fd, addr);
            s.udp = Some(fd);
        }
        out.push(s);
    }
    Ok((out, addr))
}

/// Makes the engine's inbounds equal to `configs` (validated by the caller).
pub(crate) fn apply_inbounds(
    shared: &Arc<Shared>,
    configs: Vec<InboundConfig>,
) -> Result<(), EngineError> {
    let _lock = shared.control_lock.lock().expect("not poisoned");
    // Under the lock `stop` fires the stop signal with: sockets bound and handed to workers
    // after a worker has left its control loop would stay open, queued, for good.
    if shared.stop.is_fired() {
        return Err(EngineError::Stopped);
    }
    let current: Vec<Arc<InboundShared>> = shared.inbounds.read().expect("not poisoned").clone();
    let by_tag: HashMap<&str, &Arc<InboundShared>> =
        current.iter().map(|i| (i.tag.as_str(), i)).collect();

    // Phase 1: build everything new (binding sockets) without touching the running state.
    let mut next = Vec::with_capacity(configs.len());
    let mut started = Vec::new();
    for c in &configs {
        let old = by_tag.get(c.tag.as_str()).copied();
        // Naming the address an inbound actually got (its port-0 port resolved) is no change.
        let key = match old {
            Some(old) if c.listen == old.local_addr => settings_key(&InboundConfig {
                listen: old.listen,
                ..c.clone()
            }),
            _ => settings_key(c),
        };
        let inbound = match old {
            Some(old) if old.settings_key == key => Arc::clone(old),
            _ => {
                let (sockets, local_addr) = bind(c, shared.workers)?;
                let traffic = Arc::clone(
                    shared
                        .inbound_traffic
                        .lock()
                        .expect("not poisoned")
                        .entry(c.tag.clone())
                        .or_insert_with(|| Arc::new(Traffic::new(shared.workers))),
                );
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let inbound = Arc::new(InboundShared::new(id, c, key, local_addr, traffic)?);
                // A replaced inbound keeps the users it had, where their keys still fit.
                if let Some(old) = old {
                    let creds = old.credentials.lock().expect("not poisoned").clone();
                    let kept: BTreeMap<u32, String> = creds
                        .into_iter()
                        .filter(|(_, pw)| inbound.check_credential(pw).is_ok())
                        .collect();
                    *inbound.credentials.lock().expect("not poisoned") = kept;
                }
                started.push((Arc::clone(&inbound), sockets));
                inbound
            }
        };
        next.push((inbound, c));
    }
    // A new inbound's table is built from the users it kept; users listed in the configs join
    // their inbounds.
    let mut staged = Vec::new();
    for (inbound, c) in &next {
        let fresh = started.iter().any(|(s, _)| Arc::ptr_eq(s, inbound));
        let creds = inbound.credentials.lock().expect("not poisoned");
        let mut changes: Vec<(u32, Option<String>)> = if fresh {
            creds.iter().map(|(&id, c)| (id, Some(c.clone()))).collect()
        } else {
            Vec::new()
        };
        for (name, credential) in c.protocol.users() {
            let id = shared.users.ensure(name, shared.workers);
            if fresh || creds.get(&id).map(String::as_str) != Some(credential) {
                changes.push((id, Some(credential.to_owned())));
            }
        }
        drop(creds);
        if !changes.is_empty() {
            staged.push(Staged::new(shared, inbound, changes)?);
        }
    }

    // Phase 2: commit.
    for s in staged {
        s.commit();
    }
    let keep: HashSet<u64> = next.iter().map(|(i, _)| i.id).collect();
    for old in &current {
        if !keep.contains(&old.id) {
            tracing::info!(inbound = %old.tag, "inbound closed");
            old.closed.fire();
        }
    }
    for (inbound, sockets) in started {
        tracing::info!(inbound = %inbound.tag, addr = %inbound.local_addr, "inbound listening");
        for (tx, s) in shared.control.iter().zip(sockets) {
            let _ = tx.send(Control::Serve {
                inbound: Arc::clone(&inbound),
                sockets: s,
            });
        }
    }
    *shared.inbounds.write().expect("not poisoned") = next.into_iter().map(|(i, _)| i).collect();
    Ok(())
}

/// Credential changes to one inbound (`None` removes the user), checked against a copy of its
/// user table: O(changes × log users), whatever the number of users.
struct Staged {
    inbound: Arc<InboundShared>,
    changes: Vec<(u32, Option<String>)>,
    keys: Keys,
}

impl Staged {
    fn new(
        shared: &Shared,
        inbound: &Arc<InboundShared>,
        changes: Vec<(u32, Option<String>)>,
    ) -> Result<Staged, EngineError> {
        let mut keys = inbound.keys();
        for (id, credential) in &changes {
            match credential {
                Some(c) => keys
                    .insert(*id, c)
                    .map_err(|message| EngineError::BadCredential {
                        user: shared.users.get(*id).name.clone(),
                        tag: inbound.tag.clone(),
                        message,
                    })?,
                None => keys.remove(*id),
            }
        }
        Ok(Staged {
            inbound: Arc::clone(inbound),
            changes,
            keys,
        })
    }

    /// Records the credentials and installs the table (under the control lock).
    fn commit(self) {
        let mut creds = self.inbound.credentials.lock().expect("not poisoned");
        for (id, credential) in self.changes {
            match credential {
                Some(c) => creds.insert(id, c),
                None => creds.remove(&id),
            };
        }
        self.inbound.install_keys(self.keys);
    }
}

fn kick(shared: &Shared, user: u32, inbound: Option<u64>) {
    for tx in &shared.control {
        let _ = tx.send(Control::Kick { user, inbound });
    }
}

/// Adds or updates a batch of users, all or nothing.
pub(crate) fn upsert_users(shared: &Arc<Shared>, users: Vec<UserSpec>) -> Result<(), EngineError> {
    let _lock = shared.control_lock.lock().expect("not poisoned");
    let inbounds: Vec<Arc<InboundShared>> = shared.inbounds.read().expect("not poisoned").clone();
    let by_tag: HashMap<&str, &Arc<InboundShared>> =
        inbounds.iter().map(|i| (i.tag.as_str(), i)).collect();
    let mut names = HashSet::new();
    for u in &users {
        if u.name.is_empty() {
            return Err(EngineError::BadBatch("a user has an empty name".into()));
        }
        if !names.insert(u.name.as_str()) {
            return Err(EngineError::BadBatch(format!(
                "user {:?} appears twice",
                u.name
            )));
        }
        let mut tags = HashSet::new();
        for ui in &u.inbounds {
            let Some(inbound) = by_tag.get(ui.tag.as_str()) else {
                return Err(EngineError::UnknownInbound {
                    user: u.name.clone(),
                    tag: ui.tag.clone(),
                });
            };
            if !tags.insert(ui.tag.as_str()) {
                return Err(EngineError::BadBatch(format!(
                    "user {:?} names inbound {:?} twice",
                    u.name, ui.tag
                )));
            }
            inbound.check_credential(&ui.password).map_err(|message| {
                EngineError::BadCredential {
                    user: u.name.clone(),
                    tag: ui.tag.clone(),
                    message,
                }
            })?;
        }
    }
    // Ids for the batch (records are created for new names; limits applied on commit).
    let ids: Vec<u32> = users
        .iter()
        .map(|u| shared.users.id(&u.name).unwrap_or(u32::MAX))
        .collect();
    let mut fresh = Vec::new();
    let ids: Vec<u32> = ids
        .into_iter()
        .zip(&users)
        .map(|(id, u)| {
            if id == u32::MAX {
                let id = shared.users.create_inactive(&u.name, shared.workers);
                fresh.push(id);
                id
            } else {
                id
            }
        })
        .collect();
    let mut staged = Vec::new();
    let mut kicks = Vec::new();
    for inbound in &inbounds {
        let creds = inbound.credentials.lock().expect("not poisoned");
        let mut changes = Vec::new();
        for (u, &id) in users.iter().zip(&ids) {
            let want = u
                .inbounds
                .iter()
                .find(|ui| ui.tag == inbound.tag)
                .map(|ui| &ui.password);
            match (creds.get(&id), want) {
                (Some(old), Some(new)) if old == new => {}
                (old, Some(new)) => {
                    if old.is_some() {
                        kicks.push((id, inbound.id));
                    }
                    changes.push((id, Some(new.clone())));
                }
                (Some(_), None) => {
                    changes.push((id, None));
                    kicks.push((id, inbound.id));
                }
                (None, None) => {}
            }
        }
        drop(creds);
        if changes.is_empty() {
            continue;
        }
        match Staged::new(shared, inbound, changes) {
            Ok(s) => staged.push(s),
            Err(e) => {
                for id in fresh {
                    shared.users.retire_id(id);
                }
                return Err(e);
            }
        }
    }
    for (u, &id) in users.iter().zip(&ids) {
        shared.users.activate(id, &u.limits);
    }
    for s in staged {
        s.commit();
    }
    for (user, inbound) in kicks {
        kick(shared, user, Some(inbound));
    }
    Ok(())
}

/// Removes users; returns how many were known.
pub(crate) fn remove_users(shared: &Arc<Shared>, names: &[String]) -> usize {
    let _lock = shared.control_lock.lock().expect("not poisoned");
    let inbounds: Vec<Arc<InboundShared>> = shared.inbounds.read().expect("not poisoned").clone();
    let mut known = 0;
    for name in names {
        let Some(id) = shared.users.retire(name) else {
            continue;
        };
        known += 1;
        for inbound in &inbounds {
            if inbound
                .credentials
                .lock()
                .expect("not poisoned")
                .remove(&id)
                .is_some()
            {
                let mut keys = inbound.keys();
                keys.remove(id);
                inbound.install_keys(keys);
            }
        }
        kick(shared, id, None);
    }
    known
}
