// DESIGN invariant 1/2, through the grant-ref allocator: a ref cannot be freed twice.
//
// `RefAllocator::free` takes the `OwnedRef` by value and `OwnedRef` is not `Copy`, so the
// second free uses a moved value. E0382 (use of moved value) is the guarantee: a double free,
// which would put one ref on the free list twice and hand it to two grants, cannot be written.
use xen_gnttab::RefAllocator;

fn main() {
    let mut refs = RefAllocator::new(16);
    let r = refs.alloc().unwrap();
    let _ = refs.free(r);
    let _ = refs.free(r);
}
