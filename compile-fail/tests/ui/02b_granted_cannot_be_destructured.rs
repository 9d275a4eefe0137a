// DESIGN invariant 1: the memory of a granted page is given back only by an end-access that
// succeeded.
//
// Destructuring a `Granted` (here through `&mut`, which would let the grant be `take`n out)
// would hand out its live grant, and so the page, without asking the hypervisor. E0451 (private
// field in a pattern) is the guarantee: outside the crate a `Granted` can be consumed only by
// `end_access` (or dropped into the reclaim queue).
use xen_gnttab::local::LocalTable;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly};

fn main() {
    let table = LocalTable::new_local(Domid(1), 64);
    let page = table.alloc_page().unwrap();
    let mut granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
    let Granted { grant, .. } = &mut granted;
    let _grant = grant.take();
}
