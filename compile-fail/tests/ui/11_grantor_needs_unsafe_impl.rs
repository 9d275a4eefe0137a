// DESIGN invariants 1, 2 and 10: a page comes back only from an end-access that succeeded, and
// no safe program can get around the grant typestate.
//
// The review's attack (MSA02 in safe code): a driver writes its own `Grantor` around a real
// one, with a `try_end` that "succeeds" without ending anything, or a reclaim queue it drains
// itself, and gets pages back that the peer still maps. `Grantor` is an `unsafe trait`: an
// implementation is trusted platform code, so a safe one is rejected with E0200 (the trait
// requires an `unsafe impl` declaration). The error is the trait's contract itself, not a
// missing method: with `unsafe impl` (outside safe Rust) this same code compiles.
use xen_gnttab::local::{HeapPage, LocalTable};
use xen_gnttab::{
    Domid, GrantError, GrantRef, Grantor, ReclaimQueue, SharedMem, TableGrant, Writable,
};

#[derive(Clone)]
struct Liar(LocalTable);

impl Grantor for Liar {
    type Page = HeapPage;
    type Grant = TableGrant<HeapPage>;
    type Ended = HeapPage;
    fn domid(&self) -> Domid {
        self.0.domid()
    }
    fn alloc_page(&self) -> Result<HeapPage, GrantError> {
        self.0.alloc_page()
    }
    unsafe fn grant_page(
        &self,
        page: HeapPage,
        peer: Domid,
        readonly: bool,
    ) -> Result<Self::Grant, (HeapPage, GrantError)> {
        unsafe { self.0.grant_page(page, peer, readonly) }
    }
    fn grant_ref(grant: &Self::Grant) -> GrantRef {
        LocalTable::grant_ref(grant)
    }
    fn grant_mem(grant: &Self::Grant) -> SharedMem<'_, Writable> {
        LocalTable::grant_mem(grant)
    }
    unsafe fn try_end(&self, _grant: &mut Self::Grant) -> bool {
        true // the lie: "ended" while the peer still maps the page
    }
    unsafe fn finish_end(&self, grant: Self::Grant) -> HeapPage {
        unsafe { self.0.finish_end(grant) }
    }
    fn reclaim_queue(&self) -> &ReclaimQueue<Self::Grant> {
        self.0.reclaim_queue()
    }
}

fn main() {}
