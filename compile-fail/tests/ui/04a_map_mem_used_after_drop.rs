// DESIGN invariant 3: a borrow of a foreign mapping cannot outlive its unmap.
//
// Dropping a `ForeignMap` unmaps the page; `mem()` borrows the guard, so the view dies with it.
// E0505 (move out of `map` while it is borrowed) is the guarantee: no load can reach a page
// that is no longer mapped (and may already be another domain's memory).
use xen_gnttab::shared::Ordering;
use xen_gnttab::{ForeignMap, ForeignMapper, ForeignRef, ReadOnly};

pub fn stale<M: ForeignMapper>(mapper: &M, r: ForeignRef) -> u8 {
    let map = ForeignMap::<M, ReadOnly>::map(mapper, r).unwrap();
    let mem = map.mem();
    drop(map);
    mem.load_u8(0, Ordering::Relaxed)
}

fn main() {}
