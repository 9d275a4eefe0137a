// DESIGN invariants 3 and 7: a view of shared memory cannot outlive the memory.
//
// `SharedMem<'a, _>` carries the lifetime of the region (page, mapping, ring) that keeps its
// memory alive. E0597 (borrowed value does not live long enough) is the guarantee: a view
// cannot be used after the region is freed.
use xen_gnttab::SharedRegion;
use xen_gnttab::shared::Ordering;

fn main() {
    let mem = {
        let region = SharedRegion::new_zeroed(4096);
        region.mem()
    };
    mem.store_u32(0, 1, Ordering::Relaxed);
}
