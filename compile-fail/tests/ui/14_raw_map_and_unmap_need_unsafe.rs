// DESIGN invariants 3 and 10: a foreign mapping lives in a `ForeignMap` guard, whose views
// borrow it, so no view outlives the unmap.
//
// A raw mapping held outside the guard could be unmapped while a view of it is still used, or
// unmapped twice. `ForeignMapper::map` and `unmap` are `unsafe fn`s: E0133 (call to unsafe
// function requires unsafe block) for each. With safe raw calls this compiles.
use xen_gnttab::{Domid, ForeignMapper, ForeignRef, GrantRef};

fn raw<M: ForeignMapper>(mapper: &M) {
    let r = ForeignRef {
        domid: Domid(1),
        gref: GrantRef(8),
    };
    let m = mapper.map(r, false).unwrap();
    let _ = mapper.unmap(m);
}

fn main() {}
