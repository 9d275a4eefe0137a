// DESIGN invariant 1: a page handed to a grant is moved into a `Granted` value.
//
// `Granted::new` takes the page by value, so once it is granted the caller has nothing left to
// read or write it through: the only way back to the page is an end-access that succeeded.
// E0382 (borrow of moved value) is that guarantee: touching the page after granting it would
// be racing the peer on memory it may be reading or writing.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, Page, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    page.mem().write_bytes(0, b"changed behind the peer's back");
    drop(granted);
}
