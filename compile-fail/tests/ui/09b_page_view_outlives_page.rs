// DESIGN invariants 1 and 7: a view of a private page cannot outlive the page's ownership.
//
// `Page::mem()` borrows the page. Keeping that view and then granting the page would leave a
// writable alias into memory the peer now owns. E0505 (move out of `page` while it is
// borrowed) is the guarantee: once the page is moved into a `Granted`, its memory is reached
// only through `Granted::mem()`.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, Page, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let mem = page.mem();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    mem.write_bytes(0, b"changed behind the peer's back");
    drop(granted);
}
