//! Brutal congestion control: send at a fixed rate, whatever the loss, compensating for the
//! loss measured, as Hysteria2 does when a client declares the rate it can receive.
//!
//! ```text
//! window = rate × smoothed RTT / ack rate        (at least MIN_WINDOW_PACKETS packets)
//! ack rate = acked / (acked + lost) over the last SLOTS seconds, at least MIN_ACK_RATE,
//!            1 until MIN_SAMPLES packets have been counted
//! ```
//!
//! quinn paces at 1.25 × window per RTT and caps the bytes in flight at the window, so the
//! window above sends `rate / ack rate`: the rate the client asked for, plus what is lost.
//!
//! The client's rate is known only after authentication, and quinn-proto builds a
//! connection's controller at the handshake and never swaps it; so each connection's
//! controller starts as quinn's Cubic and turns into Brutal once [`SendRate::set`] gives it a
//! rate (written once, by the connection's own worker; an atomic because quinn requires
//! controllers to be `Send`).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_proto::congestion::{Controller, ControllerFactory, CubicConfig};
use quinn_proto::RttEstimator;

/// Seconds of acknowledgement history the ack rate is measured over.
const SLOTS: usize = 5;
/// Packets counted before the measured ack rate is trusted.
const MIN_SAMPLES: u64 = 50;
/// The lowest ack rate compensated for: at worse loss, Brutal sends at most 1.25 × the rate.
const MIN_ACK_RATE: f64 = 0.8;
/// The smallest window, in packets.
const MIN_WINDOW_PACKETS: u64 = 10;
/// The RTT assumed before the first sample (RFC 9002's initial RTT).
const INITIAL_RTT: Duration = Duration::from_millis(333);

/// The rate a connection sends at, in bytes per second; 0 until set (the controller then
/// acts as Cubic).
#[derive(Clone, Default)]
pub(super) struct SendRate(Arc<AtomicU64>);

impl SendRate {
    /// Switches the connection to Brutal at `bytes_per_sec` (0 leaves it on Cubic).
    pub(super) fn set(&self, bytes_per_sec: u64) {
        self.0.store(bytes_per_sec, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Builds each connection's controller, bound to that connection's [`SendRate`].
pub(super) struct Factory {
    pub(super) rate: SendRate,
}

impl ControllerFactory for Factory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Brutal {
            rate: self.rate.clone(),
            inner: Arc::new(CubicConfig::default()).build(now, current_mtu),
            mtu: u64::from(current_mtu),
            rtt: None,
            epoch: now,
            slots: [Slot::default(); SLOTS],
            ack_rate: 1.0,
        })
    }
}

/// Packets acknowledged and lost in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Slot {
    second: u64,
    acked: u64,
    lost: u64,
}

struct Brutal {
    rate: SendRate,
    /// Cubic: in charge until a rate is set, and kept up to date meanwhile.
    inner: Box<dyn Controller>,
    mtu: u64,
    rtt: Option<Duration>,
    epoch: Instant,
    /// Ring of per-second counts, indexed by second modulo its length.
    slots: [Slot; SLOTS],
    /// Recomputed on every acknowledgement and loss.
    ack_rate: f64,
}

impl Brutal {
    fn slot(&mut self, now: Instant) -> &mut Slot {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                acked: 0,
                lost: 0,
            };
        }
        slot
    }

    fn update_ack_rate(&mut self, now: Instant) {
        let current = now.saturating_duration_since(self.epoch).as_secs();
        let (acked, lost) = self
            .slots
            .iter()
            .filter(|s| current.saturating_sub(s.second) < SLOTS as u64)
            .fold((0, 0), |(a, l), s| (a + s.acked, l + s.lost));
        self.ack_rate = if acked + lost < MIN_SAMPLES {
            1.0
        } else {
            (acked as f64 / (acked + lost) as f64).max(MIN_ACK_RATE)
        };
    }

    /// The window for `rate` bytes per second.
    fn brutal_window(&self, rate: u64) -> u64 {
        let rtt = self.rtt.unwrap_or(INITIAL_RTT).as_secs_f64();
        let window = rate as f64 * rtt / self.ack_rate;
        (window as u64).max(MIN_WINDOW_PACKETS * self.mtu)
    }
}

impl Controller for Brutal {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
        self.rtt = Some(rtt.get());
        self.slot(now).acked += 1;
        self.update_ack_rate(now);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        let packets = lost_bytes.div_ceil(self.mtu.max(1)).max(1);
        self.slot(now).lost += packets;
        self.update_ack_rate(now);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
        self.mtu = u64::from(new_mtu);
    }

    fn window(&self) -> u64 {
        match self.rate.get() {
            0 => self.inner.window(),
            rate => self.brutal_window(rate),
        }
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Brutal {
            rate: self.rate.clone(),
            inner: self.inner.clone_box(),
            mtu: self.mtu,
            rtt: self.rtt,
            epoch: self.epoch,
            slots: self.slots,
            ack_rate: self.ack_rate,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brutal(now: Instant) -> (SendRate, Brutal) {
        let rate = SendRate::default();
        let factory = Arc::new(Factory { rate: rate.clone() });
        let controller = factory.build(now, 1200);
        let brutal = *controller.into_any().downcast::<Brutal>().unwrap();
        (rate, brutal)
    }

    #[test]
    fn cubic_until_a_rate_is_set_then_rate_times_rtt() {
        let now = Instant::now();
        let (rate, mut b) = brutal(now);
        let cubic = b.inner.window();
        assert_eq!(b.window(), cubic);
        rate.set(10_000_000);
        // No RTT sample yet: the initial 333 ms.
        assert_eq!(b.window(), 3_330_000);
        b.rtt = Some(Duration::from_millis(50));
        assert_eq!(b.window(), 500_000);
        // Never below ten packets.
        b.rtt = Some(Duration::from_micros(10));
        assert_eq!(b.window(), 12_000);
    }

    #[test]
    fn loss_raises_the_window_down_to_the_minimum_ack_rate() {
        let now = Instant::now();
        let (rate, mut b) = brutal(now);
        rate.set(1_000_000);
        b.rtt = Some(Duration::from_millis(100));
        // Too few samples: loss is not trusted yet.
        for _ in 0..10 {
            b.on_congestion_event(now, now, false, 1200);
        }
        assert_eq!(b.window(), 100_000);
        // 90 acked, 10 lost in the window: ack rate 0.9.
        for _ in 0..90 {
            b.slot(now).acked += 1;
        }
        b.update_ack_rate(now);
        assert_eq!(b.window(), (100_000.0 / 0.9) as u64);
        // Heavy loss is compensated only down to an ack rate of 0.8.
        for _ in 0..200 {
            b.on_congestion_event(now, now, false, 1200);
        }
        assert_eq!(b.window(), 125_000);
        // Samples older than the history no longer count.
        b.update_ack_rate(now + Duration::from_secs(SLOTS as u64));
        assert_eq!(b.window(), 100_000);
    }
}
