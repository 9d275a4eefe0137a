// DESIGN invariant 1/2, through the grant-ref allocator: a ref cannot be freed twice.
//
// An `OwnedRef` goes back to its allocator by value. A clone would be a second token for the
// same ref, freeable while the first is still in use, so one ref would be handed out twice.
// E0599 (no method `clone`: `OwnedRef` is not `Clone`) is the guarantee.
use xen_gnttab::RefAllocator;

fn main() {
    let mut refs = RefAllocator::new(16);
    let r = refs.alloc().unwrap();
    let _twin = r.clone();
    refs.free(r);
}
