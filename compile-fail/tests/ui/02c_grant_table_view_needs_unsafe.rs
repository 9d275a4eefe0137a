// DESIGN invariants 1, 2 and 10: the grant table is written only by the grant typestate.
//
// With a view of its own grant table a driver could clear `GTF_reading`/`GTF_writing` on an
// entry the backend maps (the next end-access would then "succeed" while the page is mapped)
// or write an entry for a ref the allocator never handed out. The table's view comes only from
// `TablePlatform::table`, an `unsafe fn` reserved to `GrantTable`: E0133 (call to unsafe
// function requires unsafe block). Were `table` a safe method this would compile.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, TablePlatform};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let view = table.platform().table();
    view.store_u32(8 * 8, 0, core::sync::atomic::Ordering::SeqCst);
}
