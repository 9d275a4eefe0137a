// DESIGN invariant 1: a failed end-access returns the grant (busy), never the page.
//
// `StillInUse` wraps the live grant in a private field; its only exits are `retry` (another
// end-access), `into_granted` (the grant, still live) or dropping it into the reclaim queue.
// E0616 (private field) is the guarantee that the page cannot be dug out of a busy grant.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    if let Err(busy) = granted.end_access() {
        let _inner = busy.0;
    }
}
