//! Name lookups off the workers: a pool of resolver threads shared by the process.
//!
//! The system resolver (`getaddrinfo`) blocks, and a nameserver that drops queries holds a
//! lookup for as long as its retries last (10-30 s with common settings). A worker must never
//! block, and one slow name must not delay anyone else's, so lookups run on threads of their
//! own: up to [`MAX_THREADS`] at once in the whole process, started when lookups are waiting
//! and no thread is free, ended after [`IDLE`] without work. A caller waits without blocking
//! (a oneshot channel the thread answers on) and only until its deadline; then it gets
//! [`OutboundError::ResolveTimeout`] and the thread, which cannot interrupt `getaddrinfo`,
//! drops the answer when it comes. A lookup still waiting for a thread when its caller gave up
//! is skipped. At most [`MAX_WAITING`] lookups wait for a thread (counting only those whose
//! callers still wait); past that a lookup fails at once with
//! [`OutboundError::ResolverBusy`], so a flood of names holds a bounded amount of memory.
//!
//! Architecture invariant: no name lookup runs on a worker, and none is waited for past its
//! deadline.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use futures_channel::oneshot;

use super::OutboundError;
use crate::runtime;

/// Most lookups running at once in the process: threads, each blocked in one lookup.
pub const MAX_THREADS: usize = 32;
/// Most lookups waiting for a thread in the process; more fail at once.
pub const MAX_WAITING: usize = 1024;
/// A resolver thread with nothing to do for this long ends.
pub const IDLE: Duration = Duration::from_secs(30);

/// A name lookup: host and port to addresses, blocking. [`system_lookup`] unless a test
/// injects its own.
pub type Lookup = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system resolver (`getaddrinfo`, so `/etc/hosts`, `nsswitch.conf` and `resolv.conf`
/// apply).
pub fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The pool every engine in the process shares. No thread starts before the first lookup.
static PROCESS_POOL: LazyLock<Arc<Pool>> =
    LazyLock::new(|| Pool::new(MAX_THREADS, MAX_WAITING, IDLE));

/// One engine's name lookups: the process's resolver threads, the lookup they run, and how
/// long a caller waits for an answer. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    pool: Arc<Pool>,
    lookup: Lookup,
    deadline: Duration,
}

impl Resolver {
    /// Lookups on the process's resolver threads with `lookup` (the system resolver when
    /// `None`), each waited for at most `deadline`.
    pub fn new(deadline: Duration, lookup: Option<Lookup>) -> Resolver {
        Resolver {
            pool: Arc::clone(&PROCESS_POOL),
            lookup: lookup.unwrap_or_else(|| Arc::new(system_lookup)),
            deadline,
        }
    }

    /// The addresses of `host` (with `port`), from a resolver thread. Never blocks the
    /// calling executor; fails after the deadline, or at once when too many lookups wait.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let (reply, answer) = oneshot::channel();
        self.pool
            .submit(Job {
                host: host.into(),
                port,
                lookup: Arc::clone(&self.lookup),
                reply,
            })
            .map_err(|Busy| OutboundError::ResolverBusy(host.to_owned()))?;
        // On the deadline `answer` is dropped: a thread that has not started the lookup skips
        // it, one that has drops its result.
        match runtime::timeout(self.deadline, answer).await {
            None => Err(OutboundError::ResolveTimeout(host.to_owned())),
            Some(Ok(result)) => result.map_err(|source| OutboundError::Resolve {
                host: host.to_owned(),
                source,
            }),
            Some(Err(oneshot::Canceled)) => Err(OutboundError::Resolve {
                host: host.to_owned(),
                source: io::Error::other("the resolver thread gave no answer"),
            }),
        }
    }
}

/// One lookup for a resolver thread.
struct Job {
    host: Box<str>,
    port: u16,
    lookup: Lookup,
    reply: oneshot::Sender<io::Result<Vec<SocketAddr>>>,
}

impl Job {
    /// Whether the caller stopped waiting (its deadline passed, or its task ended).
    fn abandoned(&self) -> bool {
        self.reply.is_canceled()
    }

    fn run(self) {
        if self.abandoned() {
            return;
        }
        // An injected lookup that panics fails its own lookup, not the thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.lookup)(&self.host, self.port)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the lookup panicked")));
        let _ = self.reply.send(result);
    }
}

/// Too many lookups are waiting for a thread.
struct Busy;

/// Resolver threads and the lookups waiting for them.
struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when a lookup is queued.
    queued: Condvar,
    max_threads: usize,
    max_waiting: usize,
    idle: Duration,
}

#[derive(Default)]
struct PoolState {
    waiting: VecDeque<Job>,
    /// Threads alive (or being started).
    threads: usize,
    /// Threads waiting for a lookup (not yet woken for one).
    free: usize,
}

impl Pool {
    fn new(max_threads: usize, max_waiting: usize, idle: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(PoolState::default()),
            queued: Condvar::new(),
            max_threads,
            max_waiting,
            idle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Nothing panics while holding the lock: lookups run outside it.
        self.state.lock().expect("not poisoned")
    }

    /// Queues `job`, starting a thread when more lookups wait than threads are free.
    fn submit(self: &Arc<Self>, job: Job) -> Result<(), Busy> {
        let mut s = self.lock();
        if s.waiting.len() >= self.max_waiting {
            // Lookups whose callers gave up do not count.
            s.waiting.retain(|j| !j.abandoned());
            if s.waiting.len() >= self.max_waiting {
                return Err(Busy);
            }
        }
        s.waiting.push_back(job);
        let start = s.waiting.len() > s.free && s.threads < self.max_threads;
        if !start {
            drop(s);
            self.queued.notify_one();
            return Ok(());
        }
        s.threads += 1;
        drop(s);
        let pool = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("mzn-resolver".into())
            .spawn(move || pool.serve());
        if let Err(e) = started {
            // The lookup waits for a busy thread instead, or until its deadline.
            tracing::warn!("cannot start a resolver thread: {e}");
            self.lock().threads -= 1;
            self.queued.notify_one();
        }
        Ok(())
    }

    /// A resolver thread's body: lookups in order until none comes for `idle`.
    fn serve(&self) {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.waiting.pop_front() {
                drop(s);
                job.run();
                s = self.lock();
                continue;
            }
            s.free += 1;
            let (guard, wait) = self
                .queued
                .wait_timeout(s, self.idle)
                .expect("not poisoned");
            s = guard;
            s.free -= 1;
            if wait.timed_out() && s.waiting.is_empty() {
                s.threads -= 1;
                return;
            }
        }
    }

    #[cfg(test)]
    fn threads(&self) -> usize {
        self.lock().threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Instant;

    /// A lookup that holds `slow.test` until released (or for 30 s), counts the lookups it
    /// ran, and answers every other name with 127.0.0.1.
    struct Fake {
        started: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
        ran: AtomicUsize,
    }

    fn fake() -> (Arc<Fake>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let f = Arc::new(Fake {
            started: Mutex::new(started_tx),
            release: Mutex::new(release_rx),
            ran: AtomicUsize::new(0),
        });
        (f, started, release)
    }

    fn lookup_of(f: &Arc<Fake>) -> Lookup {
        let f = Arc::clone(f);
        Arc::new(move |host, port| {
            f.ran.fetch_add(1, Ordering::SeqCst);
            if host.starts_with("slow") {
                let _ = f.started.lock().unwrap().send(());
                let _ = f
                    .release
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
                return Err(io::Error::other("nameserver dropped the query"));
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        })
    }

    fn resolver(pool: &Arc<Pool>, lookup: Lookup, deadline: Duration) -> Resolver {
        Resolver {
            pool: Arc::clone(pool),
            lookup,
            deadline,
        }
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutor::default().run(fut)
    }

    #[test]
    fn a_lookup_past_its_deadline_fails_with_a_timeout() {
        let (f, _started, release) = fake();
        let pool = Pool::new(4, 16, IDLE);
        let r = resolver(&pool, lookup_of(&f), Duration::from_millis(200));
        let at = Instant::now();
        let err = run(r.lookup("slow.test", 80)).unwrap_err();
        assert!(matches!(err, OutboundError::ResolveTimeout(_)), "{err:?}");
        assert_eq!(err.to_string(), "resolving slow.test timed out");
        assert!(at.elapsed() < Duration::from_secs(20), "{:?}", at.elapsed());
        // On a loaded machine no thread may have taken the lookup before its deadline (then
        // it is skipped, never started); one that did is let go.
        let _ = release.send(());
    }

    #[test]
    fn a_slow_lookup_does_not_hold_up_the_next() {
        let (f, started, release) = fake();
        let pool = Pool::new(4, 16, IDLE);
        let lookup = lookup_of(&f);
        run(async {
            let slow = resolver(&pool, Arc::clone(&lookup), Duration::from_secs(60));
            let fast = resolver(&pool, lookup, Duration::from_secs(10));
            let held = runtime::timeout(Duration::from_secs(60), slow.lookup("slow.test", 80));
            let next = async {
                // Only once the slow lookup holds a thread.
                while started.try_recv().is_err() {
                    runtime::sleep(Duration::from_millis(5)).await;
                }
                let a = fast.lookup("localhost", 80).await;
                release.send(()).unwrap();
                a
            };
            let (held, next) = futures_lite::future::zip(held, next).await;
            assert_eq!(next.unwrap(), [SocketAddr::from(([127, 0, 0, 1], 80))]);
            let err = held.expect("released").unwrap_err();
            assert!(matches!(err, OutboundError::Resolve { .. }), "{err:?}");
        });
    }

    #[test]
    fn lookups_past_the_waiting_bound_fail_at_once_and_abandoned_ones_are_skipped() {
        let (f, started, release) = fake();
        // One thread, two places to wait.
        let pool = Pool::new(1, 2, IDLE);
        let lookup = lookup_of(&f);
        run(async {
            let long = resolver(&pool, Arc::clone(&lookup), Duration::from_secs(60));
            let short = resolver(&pool, lookup, Duration::from_millis(100));
            let held = runtime::timeout(Duration::from_secs(60), long.lookup("slow.test", 80));
            let rest = async {
                while started.try_recv().is_err() {
                    runtime::sleep(Duration::from_millis(5)).await;
                }
                // The one thread is busy: these two wait, then time out.
                let (a, b) = futures_lite::future::zip(
                    short.lookup("a.test", 80),
                    short.lookup("b.test", 80),
                )
                .await;
                assert!(matches!(a, Err(OutboundError::ResolveTimeout(_))), "{a:?}");
                assert!(matches!(b, Err(OutboundError::ResolveTimeout(_))), "{b:?}");
                // Both places are taken by abandoned lookups, which do not count.
                let (c, d) = futures_lite::future::zip(
                    short.lookup("c.test", 80),
                    short.lookup("d.test", 80),
                )
                .await;
                assert!(matches!(c, Err(OutboundError::ResolveTimeout(_))), "{c:?}");
                assert!(matches!(d, Err(OutboundError::ResolveTimeout(_))), "{d:?}");
                // Two live lookups wait; the next one fails at once.
                let waiting =
                    futures_lite::future::zip(long.lookup("e.test", 80), long.lookup("f.test", 80));
                let refused = async {
                    let at = Instant::now();
                    let g = long.lookup("g.test", 80).await;
                    assert!(at.elapsed() < Duration::from_secs(5), "{:?}", at.elapsed());
                    release.send(()).unwrap();
                    g
                };
                let ((e, f), g) = futures_lite::future::zip(waiting, refused).await;
                assert!(matches!(g, Err(OutboundError::ResolverBusy(_))), "{g:?}");
                assert_eq!(
                    g.unwrap_err().to_string(),
                    "cannot resolve g.test: too many lookups waiting"
                );
                assert!(e.is_ok() && f.is_ok(), "{e:?} {f:?}");
            };
            let (held, ()) = futures_lite::future::zip(held, rest).await;
            assert!(held.is_some());
        });
        // slow, e and f ran; a to d were skipped.
        assert_eq!(f.ran.load(Ordering::SeqCst), 3);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn threads_start_on_demand_up_to_the_bound_and_end_when_idle() {
        let (f, started, release) = fake();
        let pool = Pool::new(3, 16, Duration::from_millis(200));
        let lookup = lookup_of(&f);
        assert_eq!(pool.threads(), 0);
        run(async {
            let r = resolver(&pool, lookup, Duration::from_secs(60));
            let held = futures_lite::future::zip(
                futures_lite::future::zip(r.lookup("slow1.test", 80), r.lookup("slow2.test", 80)),
                futures_lite::future::zip(r.lookup("slow3.test", 80), r.lookup("slow4.test", 80)),
            );
            let check = async {
                for _ in 0..3 {
                    while started.try_recv().is_err() {
                        runtime::sleep(Duration::from_millis(5)).await;
                    }
                }
                assert_eq!(pool.threads(), 3);
                for _ in 0..4 {
                    release.send(()).unwrap();
                }
            };
            let (((a, b), (c, d)), ()) = futures_lite::future::zip(held, check).await;
            // Released, the fake lookup fails them all.
            assert!(a.is_err() && b.is_err() && c.is_err() && d.is_err());
        });
        // Idle threads end.
        let at = Instant::now();
        while pool.threads() > 0 {
            assert!(at.elapsed() < Duration::from_secs(20), "threads stay");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
