// DESIGN invariant 1: the memory of a granted page is given back only by an end-access that
// succeeded.
//
// The live grant (which owns the page) sits in a private field of `Granted`, so it cannot be
// taken out while the peer may still have it mapped. E0616 (private field) is the guarantee:
// the only path from a `Granted` to its page is `end_access`, which checks with the hypervisor.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let mut granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    let _grant = granted.grant.take();
}
