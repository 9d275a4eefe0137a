// DESIGN invariant 2: a grant that cannot be ended is never freed nor reused: it waits in a
// reclaim queue, and leaves it only through a successful end-access.
//
// The queue's draining method is private; `Grantor::reclaim` is the only public way out, and it
// hands back only what `try_end` ended. E0624 (method `take_all` is private) is the guarantee.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Grantor};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let _stolen = table.reclaim_queue().take_all();
}
