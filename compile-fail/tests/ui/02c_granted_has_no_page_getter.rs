// DESIGN invariant 1: the memory of a granted page is given back only by an end-access that
// succeeded.
//
// `Granted` has no method that yields its page without ending the grant (no `into_page`,
// `into_inner`, `take_page`...). E0599 (no such method) documents that absence: a driver that
// wants its page back must call `end_access` and handle `StillInUse`.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    let _page = granted.into_page();
}
