// DESIGN invariant 3: read-only and writable grants are different types.
//
// A read-only grant must not be passed where a writable one is expected (for example as a
// receive buffer the peer fills). E0308 (mismatched types) is the guarantee.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly, Writable};

fn rx_buffer(_buf: Granted<LocalTable, Writable>) {}

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    rx_buffer(granted);
}
