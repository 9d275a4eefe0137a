// DESIGN invariant 3: a borrow of a foreign mapping cannot outlive its unmap.
//
// `ForeignMap::unmap` consumes the guard; `mem()` borrows it, so the view cannot be used after
// the unmap. E0505 (move out of `map` while it is borrowed) is the guarantee: no load can
// reach a page that is no longer mapped.
use xen_gnttab::shared::Ordering;
use xen_gnttab::{ForeignMap, ForeignMapper, ForeignRef, ReadOnly};

pub fn stale<M: ForeignMapper>(mapper: &M, r: ForeignRef) -> u8 {
    let map = ForeignMap::<M, ReadOnly>::map(mapper, r).unwrap();
    let mem = map.mem();
    map.unmap().unwrap();
    mem.load_u8(0, Ordering::Relaxed)
}

fn main() {}
