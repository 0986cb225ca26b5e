//! Inbounds: what each worker runs for each configured listener.

pub(crate) mod shadowsocks;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::buffer::BufferPool;
use crate::runtime;
use crate::{InboundKind, Shared};

/// Size of relay buffers: a whole 2022 chunk (64 KiB + headers) plus room to read ahead.
pub(crate) const RELAY_BUFFER: usize = 128 * 1024;

/// Per-worker state: owned by one executor, never shared.
pub(crate) struct WorkerCtx {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) buffers: Rc<BufferPool>,
    /// Live connections and UDP sessions on this worker.
    pub(crate) live: Cell<usize>,
    /// The user last authenticated from each source address, per inbound: tried first.
    hints: RefCell<HashMap<(usize, IpAddr), u32>>,
}

const MAX_HINTS: usize = 1 << 16;

impl WorkerCtx {
    pub(crate) fn hint(&self, inbound: usize, ip: IpAddr) -> Option<u32> {
        self.hints.borrow().get(&(inbound, ip)).copied()
    }

    pub(crate) fn remember(&self, inbound: usize, ip: IpAddr, user: u32) {
        let mut h = self.hints.borrow_mut();
        if h.len() >= MAX_HINTS {
            h.clear();
        }
        h.insert((inbound, ip), user);
    }

    /// Counts a connection or session of inbound `inbound` as live until the guard drops.
    pub(crate) fn live_guard(self: &Rc<Self>, inbound: usize) -> LiveGuard {
        self.live.set(self.live.get() + 1);
        self.shared.inbounds[inbound].traffic.opened(self.index);
        LiveGuard(Rc::clone(self), inbound)
    }
}

pub(crate) struct LiveGuard(Rc<WorkerCtx>, usize);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
        self.0.shared.inbounds[self.1].traffic.closed(self.0.index);
    }
}

/// The body of one worker: adopt its sockets, serve until stopped, drain, exit.
pub(crate) async fn run_worker(shared: Arc<Shared>, index: usize) {
    let sockets = shared.sockets.lock().expect("not poisoned")[index]
        .take()
        .unwrap_or_default();
    let ctx = Rc::new(WorkerCtx {
        index,
        shared: Arc::clone(&shared),
        buffers: BufferPool::new(RELAY_BUFFER, 1024),
        live: Cell::new(0),
        hints: RefCell::new(HashMap::new()),
    });
    for (i, s) in sockets.into_iter().enumerate() {
        match &shared.inbounds[i].kind {
            InboundKind::Shadowsocks(_) => {
                if let Some(fd) = s.tcp {
                    runtime::spawn(shadowsocks::serve_tcp(
                        Rc::clone(&ctx),
                        i,
                        runtime::adopt_listener(fd),
                    ));
                }
                if let Some(fd) = s.udp {
                    runtime::spawn(shadowsocks::serve_udp(
                        Rc::clone(&ctx),
                        i,
                        Rc::new(runtime::adopt_udp(fd)),
                    ));
                }
            }
        }
    }
    shared.stop.wait().await;
    // Listeners close as their loops see the stop signal; live connections finish or are
    // closed when the grace period ends (the `close` signal).
    while ctx.live.get() > 0 {
        runtime::sleep(Duration::from_millis(20)).await;
    }
    tracing::debug!(worker = index, "worker drained");
}
