//! Loom models of the grant-entry protocol: the guest's end-access racing the hypervisor's
//! `_set_status_v1` compare-and-swap (DESIGN invariants 1 and 2; XSA-396).
//!
//! Run with `cargo xtask loom` (`RUSTFLAGS="--cfg loom"`, release, `LOOM_MAX_PREEMPTIONS=3`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use xen_gnttab::abi::{GTF_READING, GTF_WRITING};
use xen_gnttab::local::LocalTable;
use xen_gnttab::shared::SharedRegion;
use xen_gnttab::v1::{self, hypervisor};
use xen_gnttab::{Domid, GrantRef, Granted, Grantor, Writable};

const PEER: u16 = 5;
const G: GrantRef = GrantRef(1);

/// One map against one end: exactly one of them wins. After a successful end no map
/// succeeds; when the map wins, the end fails.
#[test]
fn end_access_vs_map_exactly_one_wins() {
    loom::model(|| {
        let table = Arc::new(SharedRegion::new_zeroed(16));
        v1::write_entry(table.mem(), G, PEER, 7, false);
        let t2 = table.clone();
        let hv = thread::spawn(move || {
            hypervisor::set_status(t2.mem(), G, PEER, false, true, false).is_ok()
        });
        let ended = v1::try_end_access(table.mem(), G);
        let mapped = hv.join().unwrap();
        assert!(
            ended != mapped,
            "ended={ended} mapped={mapped}: exactly one must win"
        );
        let (flags, _) = v1::read_combo(table.mem(), G);
        if ended {
            assert_eq!(flags, 0, "an ended entry permits nothing");
            assert!(hypervisor::set_status(table.mem(), G, PEER, true, true, false).is_err());
        } else {
            assert_eq!(
                flags & (GTF_READING | GTF_WRITING),
                GTF_READING | GTF_WRITING
            );
        }
    });
}

/// A mapper that maps, uses the page and unmaps, against a guest that retries the end and
/// then reuses the page. The reuse must never happen while the mapping is live.
#[test]
fn page_is_never_reused_while_mapped() {
    loom::model(|| {
        let table = Arc::new(SharedRegion::new_zeroed(16));
        v1::write_entry(table.mem(), G, PEER, 7, true);
        let in_use = Arc::new(AtomicBool::new(false));
        let (t2, u2) = (table.clone(), in_use.clone());
        let hv = thread::spawn(move || {
            if hypervisor::set_status(t2.mem(), G, PEER, true, true, false).is_ok() {
                u2.store(true, Ordering::SeqCst);
                // ... the backend reads the page here ...
                u2.store(false, Ordering::SeqCst);
                hypervisor::reduce_status(t2.mem(), G, true, true);
            }
        });
        for _ in 0..2 {
            if v1::try_end_access(table.mem(), G) {
                assert!(
                    !in_use.load(Ordering::SeqCst),
                    "page reused while the peer maps it"
                );
                break;
            }
            thread::yield_now();
        }
        hv.join().unwrap();
    });
}

/// The typestate on top: `Granted::end_access` returns the page only when the end won;
/// otherwise the grant comes back and, dropped, waits in the reclaim queue.
#[test]
fn granted_end_access_returns_the_page_only_when_the_map_lost() {
    loom::model(|| {
        let table = LocalTable::new_local(Domid(1), 16);
        let page = table.alloc_page().unwrap();
        let g = Granted::<_, Writable>::new(&table, page, Domid(PEER)).unwrap();
        let gref = g.gref();
        let t2 = table.clone();
        // The local platform's peer pin is Xen's map: `_set_status_v1` on the entry.
        let hv = thread::spawn(move || t2.peer_pin(gref, Domid(PEER), false).is_ok());
        let outcome = g.end_access();
        let mapped = hv.join().unwrap();
        match outcome {
            Ok(_page) => assert!(!mapped, "the page came back although the map succeeded"),
            Err(busy) => {
                assert!(mapped, "the end failed although nothing mapped");
                drop(busy);
                assert_eq!(table.reclaim_queue().len(), 1);
                assert_eq!(
                    table.reclaim().still_busy,
                    1,
                    "still mapped: nothing is reclaimed"
                );
            }
        }
    });
}

/// Two pins (read-only then writable) by the same mapper against the end: the writable pin
/// of an entry already pinned skips the domid check but must still fail after an end.
#[test]
fn second_pin_after_end_is_refused() {
    loom::model(|| {
        let table = Arc::new(SharedRegion::new_zeroed(16));
        v1::write_entry(table.mem(), G, PEER, 7, false);
        let t2 = table.clone();
        let hv = thread::spawn(move || {
            let first = hypervisor::set_status(t2.mem(), G, PEER, true, true, false).is_ok();
            let second =
                first && hypervisor::set_status(t2.mem(), G, PEER, false, true, true).is_ok();
            (first, second)
        });
        let ended = v1::try_end_access(table.mem(), G);
        let (first, second) = hv.join().unwrap();
        assert!(!(ended && first), "a pin and an end both succeeded");
        if first {
            assert!(
                second,
                "an upgrade of a live pin on a writable grant succeeds"
            );
        }
    });
}
