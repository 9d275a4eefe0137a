// DESIGN invariant 3: read-only and writable foreign mappings are different types.
//
// `ForeignMap<M, ReadOnly>::mem()` is a `SharedMem<'_, ReadOnly>`, and the volatile copy-in
// `write_bytes` exists only on `SharedMem<'_, Writable>`. E0599 (no method `write_bytes`) is the
// guarantee: a backend cannot copy data into a grant shared read-only, for any platform `M`.
use xen_gnttab::{ForeignMap, ForeignMapper, ReadOnly};

pub fn overwrite<M: ForeignMapper>(map: &ForeignMap<M, ReadOnly>) {
    map.mem().write_bytes(0, b"not yours to write");
}

fn main() {}
