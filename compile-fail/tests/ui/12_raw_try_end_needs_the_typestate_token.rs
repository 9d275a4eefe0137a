// DESIGN invariants 1 and 2: only the typestate may end a grant.
//
// `Grantor::try_end` (and `grant_page`) take a `Typestate` token whose constructor is private
// to xen-gnttab. A driver therefore cannot grant a page outside `Granted`, end it by hand, and
// drop the raw grant record (freeing the page) after a failed end, which is MSA02 / XSA-396.
// E0423 (cannot initialise a tuple struct with private fields) is the guarantee.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Grantor, Typestate};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let _ = table.grant_page(page, Domid(2), false, &Typestate(()));
}
