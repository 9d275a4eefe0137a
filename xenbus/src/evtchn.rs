//! Event channels: the [`EventChannels`] trait, the per-port pending/mask protocol, and the
//! [`Damper`] against event storms (XSA-391).

use crate::error::EvtchnError;
use core::fmt;
use core::time::Duration;
use xen_gnttab::shared::Ordering;
use xen_gnttab::{Domid, SharedMem, Writable};

/// An event-channel port number, local to one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Event channels as one driver sees them, with the semantics of `/dev/xen/evtchn`:
///
/// * a bound port starts unmasked;
/// * a notification sets the port pending; a pending, unmasked port *fires*: it is handed to
///   [`poll`](Self::poll) / [`wait`](Self::wait) once and is **masked** from then on, so more
///   notifications only keep it pending (they coalesce);
/// * [`unmask`](Self::unmask) re-arms it; if it became pending meanwhile it fires again at
///   once. No notification is lost, and a storm costs one wake-up per re-arm.
pub trait EventChannels {
    /// `EVTCHNOP_alloc_unbound`: a fresh port that `remote` may bind to.
    fn alloc_unbound(&self, remote: Domid) -> Result<Port, EvtchnError>;
    /// `EVTCHNOP_bind_interdomain`: connects a fresh local port to `remote`'s unbound port
    /// (which must have been allocated for us).
    fn bind_interdomain(&self, remote: Domid, remote_port: Port) -> Result<Port, EvtchnError>;
    /// `EVTCHNOP_send`: notifies the other end. A port whose peer has gone drops it, as Xen
    /// does for an unbound port.
    fn notify(&self, port: Port) -> Result<(), EvtchnError>;
    /// `EVTCHNOP_close`: the peer's end becomes unbound.
    fn unbind(&self, port: Port) -> Result<(), EvtchnError>;
    /// Re-arms a fired port (`write()` of the port to `/dev/xen/evtchn`).
    fn unmask(&self, port: Port) -> Result<(), EvtchnError>;
    /// A fired port, without blocking.
    fn poll(&self) -> Result<Option<Port>, EvtchnError>;
    /// A fired port, waiting at most `timeout`; `Ok(None)` when it expires.
    fn wait(&self, timeout: Duration) -> Result<Option<Port>, EvtchnError>;
}

impl<E: EventChannels + ?Sized> EventChannels for &E {
    fn alloc_unbound(&self, remote: Domid) -> Result<Port, EvtchnError> {
        (**self).alloc_unbound(remote)
    }
    fn bind_interdomain(&self, remote: Domid, remote_port: Port) -> Result<Port, EvtchnError> {
        (**self).bind_interdomain(remote, remote_port)
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        (**self).notify(port)
    }
    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        (**self).unbind(port)
    }
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        (**self).unmask(port)
    }
    fn poll(&self) -> Result<Option<Port>, EvtchnError> {
        (**self).poll()
    }
    fn wait(&self, timeout: Duration) -> Result<Option<Port>, EvtchnError> {
        (**self).wait(timeout)
    }
}

/// The pending bit of a [`PortWord`].
pub const PENDING: u32 = 1 << 0;
/// The mask bit of a [`PortWord`].
pub const MASKED: u32 = 1 << 1;

/// What a state change asks the caller to do.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The port fired: hand it to the reader (it is now masked).
    Fire,
    /// Nothing to hand over (latched as pending, or nothing pending).
    None,
}

/// The pending and mask bits of one port, in a 32-bit word of memory shared with the
/// hypervisor side (Xen keeps them in `shared_info`'s `evtchn_pending`/`evtchn_mask`
/// bitmaps).
///
/// Both bits live in one word and every transition is one compare-and-swap, so exactly one
/// of a racing [`raise`](Self::raise) and [`unmask`](Self::unmask) sees the other's effect
/// and fires the port: a notification is never lost and never delivered twice. A fired port
/// is masked with its pending bit consumed; it stays masked until `unmask`.
#[derive(Clone, Copy, Debug)]
pub struct PortWord<'a> {
    mem: SharedMem<'a, Writable>,
    off: usize,
}

impl<'a> PortWord<'a> {
    /// The word at byte offset `off` (4-aligned) of `mem`.
    pub fn new(mem: SharedMem<'a, Writable>, off: usize) -> Self {
        PortWord { mem, off }
    }

    fn update(&self, f: impl Fn(u32) -> (u32, Delivery)) -> Delivery {
        let mut cur = self.mem.load_u32(self.off, Ordering::Acquire);
        loop {
            let (new, d) = f(cur);
            if new == cur {
                return d;
            }
            match self.mem.compare_exchange_u32(
                self.off,
                cur,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return d,
                Err(now) => cur = now,
            }
        }
    }

    /// A notification arrives: fires an unmasked port, else latches it as pending.
    pub fn raise(&self) -> Delivery {
        self.update(|w| {
            if w & MASKED == 0 {
                (w | MASKED, Delivery::Fire)
            } else {
                (w | PENDING, Delivery::None)
            }
        })
    }

    /// Re-arms the port: fires it again at once (staying masked) if it became pending, else
    /// unmasks it.
    pub fn unmask(&self) -> Delivery {
        self.update(|w| {
            if w & PENDING != 0 {
                ((w & !PENDING) | MASKED, Delivery::Fire)
            } else {
                (w & !MASKED, Delivery::None)
            }
        })
    }

    /// Masks the port (notifications latch as pending).
    pub fn mask(&self) {
        let _ = self.update(|w| (w | MASKED, Delivery::None));
    }

    /// Clears both bits: a freshly bound port, unmasked and idle.
    pub fn reset(&self) {
        self.mem.store_u32(self.off, 0, Ordering::Release);
    }

    /// The raw bits (diagnostics).
    pub fn bits(&self) -> u32 {
        self.mem.load_u32(self.off, Ordering::Acquire)
    }
}

/// Damps a handler that an event storm keeps waking (XSA-391), after Linux's lateeoi
/// (`xen_irq_lateeoi_locked`): each run that found no work is *spurious*; once more than
/// `threshold` spurious runs have come in a row, re-arming the port is delayed
/// `base << (count - 1 - threshold)`, capped at `cap`. A run that found work resets the count.
///
/// Drive it from the event loop: after handling a fired port, call
/// [`record`](Self::record) with whether there was work, and unmask the port only after the
/// returned delay. A storm of *n* empty notifications then costs O(log n) handler runs
/// until the delay reaches the cap, and one run per `cap` after that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damper {
    spurious: u32,
    threshold: u32,
    base: Duration,
    cap: Duration,
}

impl Damper {
    /// A damper with the given threshold, first delay and cap.
    pub const fn new(threshold: u32, base: Duration, cap: Duration) -> Self {
        Damper {
            spurious: 0,
            threshold,
            base,
            cap,
        }
    }

    /// Linux's values: threshold 1, one jiffy (4 ms at HZ=250) doubling up to one second.
    pub const fn linux() -> Self {
        Self::new(1, Duration::from_millis(4), Duration::from_secs(1))
    }

    /// Records a handler run and returns how long to wait before re-arming the port.
    pub fn record(&mut self, found_work: bool) -> Duration {
        if found_work {
            self.spurious = 0;
        } else {
            self.spurious = self.spurious.saturating_add(1);
        }
        self.delay()
    }

    /// The delay the current count asks for.
    pub fn delay(&self) -> Duration {
        if self.spurious <= self.threshold {
            return Duration::ZERO;
        }
        let shift = self.spurious - 1 - self.threshold;
        match 1u32
            .checked_shl(shift)
            .and_then(|m| self.base.checked_mul(m))
        {
            Some(d) if d < self.cap => d,
            _ => self.cap,
        }
    }

    /// Spurious runs in a row so far.
    pub fn spurious(&self) -> u32 {
        self.spurious
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_gnttab::SharedRegion;

    #[test]
    fn fired_port_stays_masked_until_unmask() {
        let r = SharedRegion::new_zeroed(8);
        let w = PortWord::new(r.mem(), 4);
        assert_eq!(w.raise(), Delivery::Fire);
        assert_eq!(w.bits(), MASKED);
        assert_eq!(w.raise(), Delivery::None);
        assert_eq!(
            w.raise(),
            Delivery::None,
            "notifications coalesce while masked"
        );
        assert_eq!(
            w.unmask(),
            Delivery::Fire,
            "pending while masked fires on unmask"
        );
        assert_eq!(w.bits(), MASKED);
        assert_eq!(w.unmask(), Delivery::None);
        assert_eq!(w.bits(), 0);
        w.mask();
        assert_eq!(w.raise(), Delivery::None);
        w.reset();
        assert_eq!(w.bits(), 0);
        assert_eq!(
            r.mem().load_u32(0, Ordering::Relaxed),
            0,
            "neighbour untouched"
        );
    }

    #[test]
    fn damper_doubles_to_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut d = Damper::new(1, ms(1), ms(100));
        assert_eq!(d.record(false), Duration::ZERO);
        assert_eq!(d.record(false), ms(1));
        assert_eq!(d.record(false), ms(2));
        assert_eq!(d.record(false), ms(4));
        for _ in 0..100 {
            d.record(false);
        }
        assert_eq!(d.delay(), ms(100));
        assert_eq!(d.record(true), Duration::ZERO);
        assert_eq!(d.spurious(), 0);
        let mut d = Damper::new(0, Duration::MAX, Duration::MAX);
        d.spurious = u32::MAX - 1;
        assert_eq!(
            d.record(false),
            Duration::MAX,
            "no overflow at the extremes"
        );
    }
}
