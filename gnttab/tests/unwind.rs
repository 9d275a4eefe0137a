//! A panic inside a platform call never frees a live grant (DESIGN invariants 1, 2 and 10).
//!
//! A platform whose `try_end` panics on demand wraps the local table. Whatever unwinds out of
//! `Granted::end_access` or `Grantor::reclaim`, every grant not yet ended must be back in the
//! reclaim queue, and its page must not come back until an end-access succeeds.
//!
//! The wrapper is an `unsafe impl Grantor`: a platform is trusted code, so writing one takes
//! `unsafe` (no safe program can implement `Grantor`). It only delegates, plus the panic.
#![allow(unsafe_code)]
#![cfg(not(loom))]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use xen_gnttab::local::{HeapPage, LocalTable};
use xen_gnttab::{
    Domid, GrantError, GrantRef, Granted, Grantor, ReclaimQueue, SharedMem, TableGrant, Writable,
};

const PEER: Domid = Domid(3);

/// The local table, with a `try_end` that panics when its countdown reaches 1.
#[derive(Clone)]
struct Panicky {
    table: LocalTable,
    countdown: Arc<AtomicU32>,
}

impl Panicky {
    fn new() -> Self {
        Panicky {
            table: LocalTable::new_local(Domid(1), 32),
            countdown: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The `n`th `try_end` from now panics (0: never).
    fn panic_at(&self, n: u32) {
        self.countdown.store(n, Ordering::SeqCst);
    }
}

// SAFETY: every method delegates to the local table's own (sound) implementation; the only
// addition is a panic at the start of `try_end`, before the table is touched, which the
// contract allows (a panic is not a false `true`).
unsafe impl Grantor for Panicky {
    type Page = HeapPage;
    type Grant = TableGrant<HeapPage>;
    type Ended = HeapPage;

    fn domid(&self) -> Domid {
        self.table.domid()
    }
    fn alloc_page(&self) -> Result<HeapPage, GrantError> {
        self.table.alloc_page()
    }
    unsafe fn grant_page(
        &self,
        page: HeapPage,
        peer: Domid,
        readonly: bool,
    ) -> Result<Self::Grant, (HeapPage, GrantError)> {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.table.grant_page(page, peer, readonly) }
    }
    fn grant_ref(grant: &Self::Grant) -> GrantRef {
        LocalTable::grant_ref(grant)
    }
    fn grant_mem(grant: &Self::Grant) -> SharedMem<'_, Writable> {
        LocalTable::grant_mem(grant)
    }
    unsafe fn try_end(&self, grant: &mut Self::Grant) -> bool {
        let left = self.countdown.load(Ordering::SeqCst);
        if left != 0 {
            self.countdown.store(left - 1, Ordering::SeqCst);
            if left == 1 {
                panic!("platform failure inside try_end");
            }
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.table.try_end(grant) }
    }
    unsafe fn finish_end(&self, grant: Self::Grant) -> HeapPage {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.table.finish_end(grant) }
    }
    fn reclaim_queue(&self) -> &ReclaimQueue<Self::Grant> {
        self.table.reclaim_queue()
    }
}

#[test]
fn a_panic_in_end_access_leaves_the_grant_in_the_reclaim_queue() {
    let p = Panicky::new();
    let free = p.table.free_refs();
    let g = Granted::<_, Writable>::new(&p, p.alloc_page().unwrap(), PEER).unwrap();
    let gref = g.gref();
    p.table.peer_pin(gref, PEER, false).unwrap();
    p.panic_at(1);
    let r = catch_unwind(AssertUnwindSafe(|| g.end_access().is_ok()));
    assert!(r.is_err(), "the platform panicked");
    assert_eq!(
        p.reclaim_queue().len(),
        1,
        "the live grant was queued, not dropped"
    );
    assert_eq!(p.table.free_refs(), free - 1, "its ref is still taken");
    // Still mapped: reclaim keeps it.
    let pass = p.reclaim();
    assert!(pass.ended.is_empty());
    assert_eq!(pass.still_busy, 1);
    // The peer lets go: now, and only now, the page comes back.
    p.table.peer_unpin(gref);
    assert_eq!(p.reclaim().ended.len(), 1);
    assert_eq!(p.table.free_refs(), free);
}

#[test]
fn a_panic_in_reclaim_puts_every_grant_not_yet_ended_back() {
    let p = Panicky::new();
    let free = p.table.free_refs();
    let mut grefs = Vec::new();
    for _ in 0..4 {
        let g = Granted::<_, Writable>::new(&p, p.alloc_page().unwrap(), PEER).unwrap();
        p.table.peer_pin(g.gref(), PEER, false).unwrap();
        grefs.push(g.gref());
        drop(g); // to the reclaim queue: the peer maps it
    }
    assert_eq!(p.reclaim_queue().len(), 4);
    // The first grant's peer lets go; the second `try_end` of the pass panics.
    p.table.peer_unpin(grefs[0]);
    p.panic_at(2);
    let r = catch_unwind(AssertUnwindSafe(|| p.reclaim().ended.len()));
    assert!(r.is_err(), "the platform panicked");
    assert_eq!(
        p.reclaim_queue().len(),
        3,
        "the one ended grant is gone; the three still mapped are back in the queue"
    );
    assert_eq!(p.table.free_refs(), free - 3);
    let pass = p.reclaim();
    assert!(pass.ended.is_empty(), "none of them ends while mapped");
    assert_eq!(pass.still_busy, 3);
    for g in &grefs[1..] {
        p.table.peer_unpin(*g);
    }
    assert_eq!(p.reclaim().ended.len(), 3);
    assert!(p.reclaim_queue().is_empty());
    assert_eq!(p.table.free_refs(), free);
}
