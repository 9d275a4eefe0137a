// DESIGN invariant 1/2, through the grant-ref allocator: refs come only from the allocator.
//
// An `OwnedRef` built by hand could name a ref that a live grant already owns, and freeing it
// would let that ref be handed out again. E0451 (a struct with private fields cannot be
// constructed outside its crate) is the guarantee that every `OwnedRef` came from `RefAllocator::alloc`.
use xen_gnttab::{GrantRef, OwnedRef};

fn main() {
    let _forged = OwnedRef {
        gref: GrantRef(9),
        owner: 1,
    };
}
