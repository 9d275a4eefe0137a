// DESIGN invariant 1 (one grant, one owner).
//
// A clone of a `Granted` would be a second owner of the same grant: one copy could end it and
// get the page back while the other still hands out its memory and its ref. E0599 (no method
// `clone`: `Granted` is not `Clone`) is the guarantee that a grant has exactly one owner.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    let _twin = granted.clone();
}
