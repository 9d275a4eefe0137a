// DESIGN invariant 3: read-only and writable foreign mappings are different types.
//
// `ForeignMap<M, ReadOnly>::mem()` is a `SharedMem<'_, ReadOnly>`, and the store methods exist
// only on `SharedMem<'_, Writable>`. E0599 (no method `store_u8`) is the guarantee: a backend
// cannot write into a grant the frontend shared read-only, for any platform `M`.
use xen_gnttab::shared::Ordering;
use xen_gnttab::{ForeignMap, ForeignMapper, ReadOnly};

pub fn poke<M: ForeignMapper>(map: &ForeignMap<M, ReadOnly>) {
    map.mem().store_u8(0, 0xff, Ordering::Relaxed);
}

fn main() {}
