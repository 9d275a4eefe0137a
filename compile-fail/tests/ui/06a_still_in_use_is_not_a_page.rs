// DESIGN invariant 1: a failed end-access returns the grant (busy), never the page.
//
// The `Err` of `end_access` is a `StillInUse`, which is not a `Page`: it cannot be refilled,
// re-granted or freed as one (the MSA02 / XSA-396 bug). E0277 (`StillInUse: Page` is not
// satisfied) is the guarantee.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, Page, ReadOnly};

fn reuse<P: Page>(page: P) {
    page.mem().fill(0, 4096, 0);
}

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    match granted.end_access() {
        Ok(page) => reuse(page),
        Err(busy) => reuse(busy),
    }
}
