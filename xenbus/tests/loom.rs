//! Loom models of the event-channel pending/mask/unmask protocol ([`PortWord`]): no
//! notification is lost, none is delivered twice, and a port never stays masked with
//! nobody holding its delivery.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xen-xenbus --test loom --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use xen_gnttab::SharedRegion;
use xen_gnttab::shared::Ordering as MemOrdering;
use xen_xenbus::evtchn::{Delivery, MASKED, PortWord};

/// Shared state of a model: the port word, work produced before each notification (as a
/// ring producer does), and deliveries queued to the reader.
struct Model {
    region: SharedRegion,
    work: AtomicUsize,
    queued: AtomicUsize,
}

impl Model {
    fn new(initial_bits: u32, queued: usize) -> Arc<Self> {
        let region = SharedRegion::new_zeroed(8);
        region
            .mem()
            .store_u32(4, initial_bits, MemOrdering::Relaxed);
        Arc::new(Model {
            region,
            work: AtomicUsize::new(0),
            queued: AtomicUsize::new(queued),
        })
    }

    fn word(&self) -> PortWord<'_> {
        PortWord::new(self.region.mem(), 4)
    }

    /// The peer: publish work, then notify.
    fn notify(&self) {
        self.work.fetch_add(1, Ordering::SeqCst);
        if self.word().raise() == Delivery::Fire {
            self.enqueue();
        }
    }

    fn enqueue(&self) {
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "a port is queued at most once");
    }

    /// The reader: take the queued delivery, handle all work, re-arm. Returns work handled.
    fn handle_one(&self) -> usize {
        let before = self.queued.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(before, 1, "handling a delivery that was queued");
        let done = self.work.swap(0, Ordering::SeqCst);
        if self.word().unmask() == Delivery::Fire {
            self.enqueue();
        }
        done
    }

    /// After all threads: the port must not be stuck, and draining must find all work.
    fn drain_and_check(&self, mut handled: usize, produced: usize) {
        let bits = self.word().bits();
        if self.queued.load(Ordering::SeqCst) == 0 {
            assert_eq!(
                bits & MASKED,
                0,
                "masked with no delivery outstanding: stuck"
            );
        }
        while self.queued.load(Ordering::SeqCst) > 0 {
            handled += self.handle_one();
        }
        assert_eq!(handled, produced, "a notification was lost");
        assert_eq!(self.word().bits(), 0, "idle and armed at the end");
    }
}

#[test]
fn notify_racing_unmask_loses_nothing() {
    loom::model(|| {
        // The port fired earlier: masked, its delivery queued to the reader.
        let m = Model::new(MASKED, 1);
        let peer = {
            let m = m.clone();
            thread::spawn(move || {
                m.notify();
                m.notify();
            })
        };
        let handled = m.handle_one();
        peer.join().unwrap();
        m.drain_and_check(handled, 2);
    });
}

#[test]
fn racing_notifiers_fire_once_and_lose_nothing() {
    loom::model(|| {
        let m = Model::new(0, 0);
        let peers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.notify())
            })
            .collect();
        for p in peers {
            p.join().unwrap();
        }
        assert_eq!(m.queued.load(Ordering::SeqCst), 1, "fired exactly once");
        m.drain_and_check(0, 2);
    });
}

#[test]
fn reader_rearming_twice_against_a_notifier() {
    loom::model(|| {
        let m = Model::new(MASKED, 1);
        let peer = {
            let m = m.clone();
            thread::spawn(move || m.notify())
        };
        // The reader handles its delivery and, if the port fired again, that one too.
        let mut handled = m.handle_one();
        if m.queued.load(Ordering::SeqCst) > 0 {
            handled += m.handle_one();
        }
        peer.join().unwrap();
        m.drain_and_check(handled, 1);
    });
}
