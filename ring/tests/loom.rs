//! Loom models of the ring's concurrency (DESIGN invariant 8 and section 5).
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p xen-ring --test loom`.
//!
//! The ring code is unchanged under loom: it reaches memory through `xen_gnttab::SharedMem`,
//! whose atomics and fence are loom's under `cfg(loom)`. Rings are tiny (2 slots of 4 bytes)
//! to keep the models small.
#![cfg(loom)]

mod common;

use common::*;
use loom::sync::Arc;
use loom::sync::{Condvar, Mutex};
use loom::thread;
use xen_gnttab::SharedRegion;
use xen_gnttab::shared::Ordering;
use xen_ring::abi::{REQ_EVENT, REQ_PROD};
use xen_ring::{BackRing, FrontRing, RingError};

type Front = FrontRing<Tiny, std::sync::Arc<SharedRegion>, u16>;
type Back = BackRing<Tiny, std::sync::Arc<SharedRegion>>;

fn pair(slots: usize) -> (Front, Back) {
    let mem = std::sync::Arc::new(SharedRegion::new_zeroed(tiny_bytes(slots)));
    let front = FrontRing::new(mem.clone()).unwrap();
    let back = BackRing::attach(mem).unwrap();
    (front, back)
}

/// One full round trip, so that both event thresholds have moved past their initial value
/// and the next notify decision really depends on the peer's final check.
fn warm_up(front: &mut Front, back: &mut Back) {
    front
        .lease()
        .unwrap()
        .submit(Small { id: 0, val: 100 }, 100);
    assert!(front.push_requests().unwrap().needed());
    let r = back.next_request().unwrap().unwrap();
    back.respond(r).unwrap();
    assert!(back.push_responses().unwrap().needed());
    assert_eq!(front.poll_response().unwrap().unwrap().1, 100);
}

/// Request direction: the frontend publishes a request and decides whether to notify while
/// the backend, out of work, re-arms `req_event` and checks again
/// (`RING_FINAL_CHECK_FOR_REQUESTS`). No lost wakeup: either the backend sees the request or
/// the frontend notifies.
#[test]
fn request_push_vs_final_check_no_lost_wakeup() {
    loom::model(|| {
        let (mut front, mut back) = pair(2);
        warm_up(&mut front, &mut back);
        let producer = thread::spawn(move || {
            front.lease().unwrap().submit(Small { id: 0, val: 7 }, 7);
            front.push_requests().unwrap().needed()
        });
        let saw = back.final_check_for_requests().unwrap();
        let notified = producer.join().unwrap();
        assert!(
            saw || notified,
            "lost wakeup: backend sleeps, frontend did not notify"
        );
        if saw {
            assert_eq!(back.next_request().unwrap().map(|r| r.val), Some(7));
        }
    });
}

/// Response direction: the backend publishes a response and decides whether to notify while
/// the frontend re-arms `rsp_event` (`RING_FINAL_CHECK_FOR_RESPONSES`).
#[test]
fn response_push_vs_final_check_no_lost_wakeup() {
    loom::model(|| {
        let (mut front, mut back) = pair(2);
        warm_up(&mut front, &mut back);
        front.lease().unwrap().submit(Small { id: 0, val: 8 }, 8);
        let _ = front.push_requests().unwrap();
        let req = back.next_request().unwrap().unwrap();
        let producer = thread::spawn(move || {
            back.respond(req).unwrap();
            back.push_responses().unwrap().needed()
        });
        let saw = front.final_check_for_responses().unwrap();
        let notified = producer.join().unwrap();
        assert!(
            saw || notified,
            "lost wakeup: frontend sleeps, backend did not notify"
        );
        if saw {
            let (rsp, v) = front.poll_response().unwrap().unwrap();
            assert_eq!((rsp.val, v), (8, 8));
        }
    });
}

/// Why `ring.h` has `xen_mb()` there: the same two sides with only Release stores and
/// Acquire loads (no `fence(SeqCst)`) lose a wakeup. The push and the final check are a
/// store-buffering pattern: each side stores, then loads what the other stored; without a
/// full barrier both loads may return the old values, so the frontend sees the stale
/// `req_event` (no notify) and the backend the stale `req_prod` (no work) and sleeps.
/// Loom finds that execution; this test fails if it ever stops finding it.
#[test]
fn release_acquire_alone_loses_a_wakeup() {
    let found = std::panic::catch_unwind(|| {
        loom::model(|| {
            let mem = std::sync::Arc::new(SharedRegion::new_zeroed(tiny_bytes(2)));
            // After one round trip: req_prod = req_cons = 1, req_event = 1.
            mem.mem().store_u32(REQ_PROD, 1, Ordering::Relaxed);
            mem.mem().store_u32(REQ_EVENT, 1, Ordering::Relaxed);
            let m2 = mem.clone();
            let producer = thread::spawn(move || {
                let (old, new) = (1u32, 2u32);
                m2.mem().store_u32(REQ_PROD, new, Ordering::Release); // wmb; req_prod = new
                // (ring.h: xen_mb() here)
                let event = m2.mem().load_u32(REQ_EVENT, Ordering::Acquire);
                new.wrapping_sub(event) < new.wrapping_sub(old)
            });
            let req_cons = 1u32;
            mem.mem()
                .store_u32(REQ_EVENT, req_cons + 1, Ordering::Release);
            // (ring.h: xen_mb() here)
            let saw = mem.mem().load_u32(REQ_PROD, Ordering::Acquire) != req_cons;
            let notified = producer.join().unwrap();
            assert!(saw || notified, "lost wakeup");
        });
    });
    assert!(
        found.is_err(),
        "loom should find the lost wakeup without fence(SeqCst)"
    );
}

/// An "event channel": a pending flag a driver sleeps on, as on its interrupt. Blocking (not
/// spinning), so that loom reports a lost wakeup as a deadlock.
#[derive(Default)]
struct Event {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }
    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while !*p {
            p = self.cv.wait(p).unwrap();
        }
        *p = false;
    }
}

/// IDs leased and returned while the backend answers concurrently, out of order, on a ring of
/// two slots with three requests (so IDs are reused): each response hands back the value
/// submitted under its ID, IDs in flight are unique, nothing is lost, and the two sides
/// sleep on notifications without losing one (a lost wakeup is a deadlock loom reports).
#[test]
fn id_lease_and_return_with_concurrent_backend() {
    const N: u16 = 3;
    loom::model(|| {
        let (mut front, mut back) = pair(2);
        let to_back = Arc::new(Event::default());
        let to_front = Arc::new(Event::default());
        let (tb, tf) = (to_back.clone(), to_front.clone());
        let backend = thread::spawn(move || {
            let mut answered = 0;
            while answered < N {
                let mut batch = Vec::new();
                while let Some(r) = back.next_request().unwrap() {
                    batch.push(r);
                }
                // Answer the newest first.
                for r in batch.into_iter().rev() {
                    back.respond(r).unwrap();
                    answered += 1;
                }
                if back.push_responses().unwrap().needed() {
                    tf.notify();
                }
                if answered < N && !back.final_check_for_requests().unwrap() {
                    tb.wait();
                }
            }
        });
        let mut ids = [u16::MAX; N as usize];
        let (mut sent, mut got) = (0u16, 0u16);
        let mut returned = Vec::new();
        while got < N {
            while sent < N {
                match front.lease() {
                    Ok(lease) => {
                        let id = lease.id();
                        assert!(id < 2);
                        assert!(
                            (0..sent).all(|s| ids[s as usize] != id || returned.contains(&s)),
                            "ID {id} leased while in flight"
                        );
                        ids[sent as usize] = id;
                        lease.submit(Small { id: 0, val: sent }, sent);
                        sent += 1;
                    }
                    Err(RingError::Full) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if front.push_requests().unwrap().needed() {
                to_back.notify();
            }
            while let Some((rsp, v)) = front.poll_response().unwrap() {
                assert_eq!(rsp.id, ids[v as usize], "value came back with its own ID");
                assert_eq!(rsp.val, v);
                returned.push(v);
                got += 1;
            }
            // Out of work (every request sent, or the ring full): sleep until notified.
            let can_send = sent < N && front.free_requests() > 0;
            if got < N && !can_send && !front.final_check_for_responses().unwrap() {
                to_front.wait();
            }
        }
        backend.join().unwrap();
        returned.sort();
        assert_eq!(returned, (0..N).collect::<Vec<_>>());
        assert_eq!(front.free_requests(), 2);
    });
}
