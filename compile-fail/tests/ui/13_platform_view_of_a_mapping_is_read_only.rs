// DESIGN invariant 3: read-only and writable foreign mappings are different types.
//
// The platform's view of a mapping (`ForeignMapper::mapping_mem`) is a `SharedMem<ReadOnly>`:
// a backend cannot turn a read-only grant into a writable view through the platform trait
// (on Linux that memory is mapped PROT_READ, and a store would fault). E0308 (mismatched types:
// expected `Writable`, found `ReadOnly`) is the access typestate itself; the writable view is
// the `unsafe fn mapping_mem_mut`, reached only through a `ForeignMap<_, Writable>`.
use xen_gnttab::{ForeignMapper, SharedMem, Writable};

fn scribble<M: ForeignMapper>(m: &M::Mapping) {
    let view: SharedMem<'_, Writable> = M::mapping_mem(m);
    view.write_bytes(0, b"into a read-only grant");
}

fn main() {}
