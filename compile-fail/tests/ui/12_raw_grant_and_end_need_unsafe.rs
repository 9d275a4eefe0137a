// DESIGN invariants 1, 2 and 10: only the typestate makes and ends grants.
//
// A driver that could call the platform's raw operations would grant a page outside any
// `Granted`, "end" it by hand and drop the raw record (freeing the page) after a failed end:
// MSA02 / XSA-396. `Grantor::grant_page`, `try_end` and `finish_end` are `unsafe fn`s whose
// contracts only `Granted` and `Grantor::reclaim` keep: each call here is E0133 (call to unsafe
// function requires unsafe block). Without the `unsafe` on the trait's methods this compiles.
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Grantor};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let mut grant = table.grant_page(page, Domid(2), false).unwrap();
    if !table.try_end(&mut grant) {
        drop(grant);
    } else {
        let _page = table.finish_end(grant);
    }
}
