//! Users as the engine sees them: counters, online state and limits.
//!
//! A [`UserRecord`] lives as long as the engine: removing a user retires it (its connections
//! are closed and it stops authenticating) but keeps its counters readable, and adding the same
//! name again revives the same record, so counters stay monotonic across remove and re-add.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::counters::Traffic;

/// Per-user limits enforced by the engine. `None` (or 0) means unlimited.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Uplink (client to destination) bytes per second, over all of the user's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_bytes_per_sec: Option<u64>,
    /// Downlink bytes per second, over all of the user's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downlink_bytes_per_sec: Option<u64>,
    /// Distinct source IP addresses connected at once (the "device limit").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ips: Option<u32>,
    /// Connections (TCP) and UDP sessions open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// Why a user's new connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The user was removed.
    #[error("user is not active")]
    Inactive,
    /// Too many connections.
    #[error("connection limit {0} reached")]
    Connections(u32),
    /// Too many distinct source addresses.
    #[error("source address limit {0} reached")]
    SourceIps(u32),
}

/// A token bucket shared by every worker (the limit holds for the user as a whole). Only
/// limited users touch its lock, once per relayed chunk.
pub struct TokenBucket {
    rate: AtomicU64,
    state: Mutex<BucketState>,
}

struct BucketState {
    /// Bytes that may still pass; negative is debt that the next sender waits off.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate: AtomicU64::new(rate),
            state: Mutex::new(BucketState {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// Takes `n` bytes; returns how long the caller must wait before sending more (zero when
    /// unlimited or within the rate). A burst of up to 1/4 s of traffic passes at once.
    pub fn take(&self, n: usize) -> Duration {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return Duration::ZERO;
        }
        let rate = rate as f64;
        let mut s = self.state.lock().expect("not poisoned");
        let now = Instant::now();
        let burst = rate / 4.0;
        s.tokens = (s.tokens + now.duration_since(s.last).as_secs_f64() * rate).min(burst);
        s.last = now;
        s.tokens -= n as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Takes `n` bytes unless the bucket is in debt: `false` (nothing taken) tells a sender
    /// that cannot wait (a receive loop several users share) to drop what it holds, as a
    /// policer does. Always `true` when unlimited.
    pub fn try_take(&self, n: usize) -> bool {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return true;
        }
        let rate = rate as f64;
        let mut s = self.state.lock().expect("not poisoned");
        let now = Instant::now();
        s.tokens = (s.tokens + now.duration_since(s.last).as_secs_f64() * rate).min(rate / 4.0);
        s.last = now;
        if s.tokens < 0.0 {
            return false;
        }
        s.tokens -= n as f64;
        true
    }

    /// Whether a rate is set.
    pub fn is_limited(&self) -> bool {
        self.rate.load(Ordering::Relaxed) != 0
    }
}

/// One user.
pub struct UserRecord {
    /// Name (unique).
    pub name: String,
    /// Traffic and open-connection counters (per-worker slots).
    pub traffic: Traffic,
    active: AtomicBool,
    open: AtomicU32,
    max_connections: AtomicU32,
    max_ips: AtomicU32,
    sources: Mutex<HashMap<IpAddr, u32>>,
    last_seen: AtomicU64,
    /// Uplink rate limit.
    pub uplink: TokenBucket,
    /// Downlink rate limit.
    pub downlink: TokenBucket,
}

impl UserRecord {
    fn new(name: &str, traffic: Traffic) -> UserRecord {
        UserRecord {
            name: name.to_owned(),
            traffic,
            active: AtomicBool::new(true),
            open: AtomicU32::new(0),
            max_connections: AtomicU32::new(0),
            max_ips: AtomicU32::new(0),
            sources: Mutex::new(HashMap::new()),
            last_seen: AtomicU64::new(0),
            uplink: TokenBucket::new(0),
            downlink: TokenBucket::new(0),
        }
    }

    fn set_limits(&self, l: &Limits) {
        self.uplink.set_rate(l.uplink_bytes_per_sec.unwrap_or(0));
        self.downlink
            .set_rate(l.downlink_bytes_per_sec.unwrap_or(0));
        self.max_ips
            .store(l.max_ips.unwrap_or(0), Ordering::Relaxed);
        self.max_connections
            .store(l.max_connections.unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether the user may authenticate.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Admits a new connection or UDP session from `source`, or says which limit refuses it.
    /// The returned guard keeps it counted until dropped.
    pub fn admit(self: &Arc<Self>, source: IpAddr, now: u64) -> Result<Admission, LimitError> {
        if !self.is_active() {
            return Err(LimitError::Inactive);
        }
        let max = self.max_connections.load(Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if max != 0 && open > max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::Connections(max));
        }
        {
            let mut sources = self.sources.lock().expect("not poisoned");
            let max_ips = self.max_ips.load(Ordering::Relaxed);
            if !sources.contains_key(&source) && max_ips != 0 && sources.len() >= max_ips as usize {
                drop(sources);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitError::SourceIps(max_ips));
            }
            *sources.entry(source).or_insert(0) += 1;
        }
        self.last_seen.fetch_max(now, Ordering::Relaxed);
        Ok(Admission {
            user: Arc::clone(self),
            source,
        })
    }

    /// Records activity at `now` (Unix seconds).
    pub fn seen(&self, now: u64) {
        if self.last_seen.load(Ordering::Relaxed) < now {
            self.last_seen.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Distinct source addresses connected now.
    pub fn source_ips(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .sources
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Last activity (Unix seconds), if any.
    pub fn last_seen(&self) -> Option<u64> {
        Some(self.last_seen.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }
}

/// A connection or session admitted for a user; releases its slot when dropped.
pub struct Admission {
    user: Arc<UserRecord>,
    source: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.user.open.fetch_sub(1, Ordering::AcqRel);
        let mut sources = self.user.sources.lock().expect("not poisoned");
        if let Some(n) = sources.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&self.source);
            }
        }
    }
}

/// Every user the engine has known, by engine-assigned id (the codecs' `UserId`).
#[derive(Default)]
pub struct Registry {
    inner: RwLock<RegistryInner>,
    /// Where user counters live when they must outlive the process.
    file: Option<Arc<crate::runtime::mapped::CounterFile>>,
}

#[derive(Default)]
struct RegistryInner {
    list: Vec<Arc<UserRecord>>,
    by_name: HashMap<String, u32>,
}

impl Registry {
    /// A registry whose user counters live in `file` (or on the heap).
    pub fn new(file: Option<Arc<crate::runtime::mapped::CounterFile>>) -> Registry {
        Registry {
            inner: RwLock::default(),
            file,
        }
    }

    fn traffic(&self, name: &str, workers: usize) -> Traffic {
        match &self.file {
            Some(f) => match f.allocate(name) {
                Ok(slots) => Traffic::mapped(slots, workers),
                Err(e) => {
                    tracing::error!(
                        user = name,
                        "counters file: {e}; this user's counters will not survive a crash"
                    );
                    Traffic::new(workers)
                }
            },
            None => Traffic::new(workers),
        }
    }

    fn create(&self, name: &str, workers: usize, active: bool) -> u32 {
        let mut inner = self.inner.write().expect("not poisoned");
        if let Some(&id) = inner.by_name.get(name) {
            if active {
                inner.list[id as usize]
                    .active
                    .store(true, Ordering::Release);
            }
            return id;
        }
        let id = inner.list.len() as u32;
        let record = UserRecord::new(name, self.traffic(name, workers));
        record.active.store(active, Ordering::Release);
        inner.list.push(Arc::new(record));
        inner.by_name.insert(name.to_owned(), id);
        id
    }

    /// The id for `name`, creating the record or reviving a retired one; limits untouched.
    pub fn ensure(&self, name: &str, workers: usize) -> u32 {
        self.create(name, workers, true)
    }

    /// The id for `name`, creating an inactive record if it is new.
    pub fn create_inactive(&self, name: &str, workers: usize) -> u32 {
        self.create(name, workers, false)
    }

    /// Applies `limits` to `id` and makes it active.
    pub fn activate(&self, id: u32, limits: &Limits) {
        let user = self.get(id);
        user.set_limits(limits);
        user.active.store(true, Ordering::Release);
    }

    /// Marks `name` inactive; returns its id if it was known.
    pub fn retire(&self, name: &str) -> Option<u32> {
        let id = self.id(name)?;
        self.retire_id(id);
        Some(id)
    }

    /// Marks `id` inactive.
    pub fn retire_id(&self, id: u32) {
        self.get(id).active.store(false, Ordering::Release);
    }

    /// The record of `id`.
    pub fn get(&self, id: u32) -> Arc<UserRecord> {
        Arc::clone(&self.inner.read().expect("not poisoned").list[id as usize])
    }

    /// The id of `name`.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.inner
            .read()
            .expect("not poisoned")
            .by_name
            .get(name)
            .copied()
    }

    /// Every record.
    pub fn all(&self) -> Vec<Arc<UserRecord>> {
        self.inner.read().expect("not poisoned").list.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_polices_instead_of_waiting() {
        let unlimited = TokenBucket::new(0);
        assert!(unlimited.try_take(1 << 30));
        // 1000 B/s: a quarter second of burst is 250 bytes, and the bucket starts empty.
        let b = TokenBucket::new(1000);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            b.try_take(100_000),
            "a packet passes while there are tokens, into debt"
        );
        // 99 750 bytes of debt: 100 s at this rate.
        assert!(!b.try_take(1), "in debt: dropped");
        assert!(
            !b.try_take(1),
            "a refused packet takes nothing, and the debt stays"
        );
        // At a rate that repays the debt in a millisecond, packets pass again.
        b.set_rate(1_000_000_000);
        std::thread::sleep(Duration::from_millis(20));
        assert!(b.try_take(100), "the debt paid off, packets pass again");
    }

    #[test]
    fn connection_and_ip_limits() {
        let reg = Registry::default();
        let id = reg.ensure("u", 1);
        reg.activate(
            id,
            &Limits {
                max_ips: Some(1),
                max_connections: Some(2),
                ..Limits::default()
            },
        );
        let u = reg.get(id);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = u.admit(a, 1).unwrap();
        assert_eq!(u.admit(b, 1).err(), Some(LimitError::SourceIps(1)));
        let g2 = u.admit(a, 1).unwrap();
        assert_eq!(u.admit(a, 1).err(), Some(LimitError::Connections(2)));
        drop((g1, g2));
        assert!(u.source_ips().is_empty());
        let _g3 = u.admit(b, 2).unwrap();
        assert_eq!(u.source_ips(), vec![b]);
        assert_eq!(u.last_seen(), Some(2));
        reg.retire("u");
        assert_eq!(u.admit(b, 3).err(), Some(LimitError::Inactive));
        assert_eq!(reg.ensure("u", 1), id, "re-adding revives the record");
        assert!(u.admit(b, 3).is_ok());
    }

    #[test]
    fn bucket_charges_debt() {
        let b = TokenBucket::new(1000);
        assert_eq!(b.take(0), Duration::ZERO);
        // A full second's debt, less what accrued since `new` (at most the 1/4 s burst).
        let wait = b.take(1000);
        assert!(
            wait >= Duration::from_millis(750) && wait <= Duration::from_millis(1000),
            "{wait:?}"
        );
        b.set_rate(0);
        assert_eq!(b.take(1 << 30), Duration::ZERO);
    }
}
