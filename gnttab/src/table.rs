//! [`GrantTable`]: the [`Grantor`] for platforms where the guest owns its grant table
//! (a unikernel that set it up with `GNTTABOP_setup_table`, and the simulator).
//!
//! It writes entries with the v1 protocol ([`crate::v1`]), allocates refs from a
//! [`RefAllocator`], and ends grants with the compare-and-swap of [`crate::v1::try_end_access`]:
//! the page comes back only when that succeeds.
//!
//! The table's memory is reached only through [`TablePlatform::table`], an `unsafe fn`: no
//! safe program gets a view of the table, so none can clear a peer's `GTF_reading` /
//! `GTF_writing` or write an entry for a ref the allocator never handed out.
#![allow(unsafe_code)] // `unsafe impl Grantor` and the calls of `TablePlatform::table`.

use crate::abi::{Domid, GrantRef};
use crate::access::Writable;
use crate::error::GrantError;
use crate::grant::{Grantor, Page, ReclaimQueue};
use crate::refs::{OwnedRef, RefAllocator};
use crate::shared::SharedMem;
use crate::v1;
use alloc::sync::Arc;
use core::fmt;

/// What a platform with its own grant table provides.
///
/// # Safety
///
/// [`GrantTable`] trusts it to keep invariants 1 and 2: [`table`](TablePlatform::table)
/// returns, every time, the memory of this domain's v1 grant table exactly as the hypervisor
/// reads it (its length a multiple of 8 bytes), which nothing but the [`GrantTable`] made over
/// this platform writes on the guest's side; [`alloc_page`](TablePlatform::alloc_page) returns
/// pages of this domain's own memory, not in use elsewhere, whose
/// [`frame`](Page::frame) is the frame the hypervisor maps for that entry.
pub unsafe trait TablePlatform: Send + Sync + 'static {
    /// The platform's page type.
    type Page: Page;
    /// This domain's id.
    fn domid(&self) -> Domid;
    /// A fresh, zeroed page.
    fn alloc_page(&self) -> Result<Self::Page, GrantError>;
    /// The grant table (all its frames, contiguous), shared with the hypervisor.
    ///
    /// # Safety
    ///
    /// Only the [`GrantTable`] over this platform may call it, and use the view only for the
    /// v1 guest protocol ([`v1::write_entry`] on refs its allocator handed out,
    /// [`v1::try_end_access`], reads). Anything else could unpin a grant the peer still maps.
    unsafe fn table(&self) -> SharedMem<'_, Writable>;
}

/// A live grant of a [`GrantTable`]: the page and the ref it is granted under.
pub struct TableGrant<Pg> {
    page: Pg,
    gref: OwnedRef,
}

impl<Pg> fmt::Debug for TableGrant<Pg> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableGrant")
            .field("gref", &self.gref.gref())
            .finish()
    }
}

struct Inner<P: TablePlatform> {
    platform: P,
    refs: spin::Mutex<RefAllocator>,
    reclaim: ReclaimQueue<TableGrant<P::Page>>,
}

/// A guest-owned v1 grant table: a cheap, cloneable handle.
pub struct GrantTable<P: TablePlatform> {
    inner: Arc<Inner<P>>,
}

impl<P: TablePlatform> Clone for GrantTable<P> {
    fn clone(&self) -> Self {
        GrantTable {
            inner: self.inner.clone(),
        }
    }
}

impl<P: TablePlatform> fmt::Debug for GrantTable<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantTable")
            .field("domid", &self.inner.platform.domid())
            .field("free_refs", &self.free_refs())
            .field("reclaim", &self.inner.reclaim)
            .finish()
    }
}

impl<P: TablePlatform> GrantTable<P> {
    /// A table over `platform`'s frames; refs 8.. up to the table's capacity are allocatable.
    pub fn new(platform: P) -> Self {
        // SAFETY: this is the table's own use of its memory: only its length is read.
        let cap = v1::capacity(unsafe { platform.table() });
        GrantTable {
            inner: Arc::new(Inner {
                platform,
                refs: spin::Mutex::new(RefAllocator::new(cap)),
                reclaim: ReclaimQueue::new(),
            }),
        }
    }

    /// The platform underneath.
    pub fn platform(&self) -> &P {
        &self.inner.platform
    }

    /// Grant refs still free.
    pub fn free_refs(&self) -> usize {
        self.inner.refs.lock().available()
    }
}

// SAFETY: `grant_page` writes an entry only under a ref just taken from this table's own
// allocator (unique among live grants) for the page it was given, and hands the page back
// untouched on failure (nothing written before both checks passed); `try_end` is v1's
// end-access compare-and-swap, which succeeds only with no pin set and leaves an entry no map
// or copy can take (true again for an entry already ended); `finish_end` frees the ref only
// after it; `grant_mem` is the granted page; the queue lives in the shared `Inner`.
unsafe impl<P: TablePlatform> Grantor for GrantTable<P> {
    type Page = P::Page;
    type Grant = TableGrant<P::Page>;
    type Ended = P::Page;

    fn domid(&self) -> Domid {
        self.inner.platform.domid()
    }

    fn alloc_page(&self) -> Result<P::Page, GrantError> {
        self.inner.platform.alloc_page()
    }

    unsafe fn grant_page(
        &self,
        page: P::Page,
        peer: Domid,
        readonly: bool,
    ) -> Result<Self::Grant, (P::Page, GrantError)> {
        let frame = page.frame().0;
        let Ok(frame32) = u32::try_from(frame) else {
            return Err((page, GrantError::FrameTooLarge(frame)));
        };
        let gref = match self.inner.refs.lock().alloc() {
            Ok(r) => r,
            Err(e) => return Err((page, e)),
        };
        v1::write_entry(
            // SAFETY: the table's own use: an entry for a ref its allocator just handed out.
            unsafe { self.inner.platform.table() },
            gref.gref(),
            peer.0,
            frame32,
            readonly,
        );
        Ok(TableGrant { page, gref })
    }

    fn grant_ref(grant: &Self::Grant) -> GrantRef {
        grant.gref.gref()
    }

    fn grant_mem(grant: &Self::Grant) -> SharedMem<'_, Writable> {
        grant.page.mem()
    }

    unsafe fn try_end(&self, grant: &mut Self::Grant) -> bool {
        // SAFETY: the table's own use: the end-access compare-and-swap of a live grant's ref.
        v1::try_end_access(unsafe { self.inner.platform.table() }, grant.gref.gref())
    }

    unsafe fn finish_end(&self, grant: Self::Grant) -> P::Page {
        let TableGrant { page, gref } = grant;
        // The ref came from this table's allocator (the caller's contract): freeing it cannot
        // fail, and a ref handed back by `free` is simply not reused.
        let _ = self.inner.refs.lock().free(gref);
        page
    }

    fn reclaim_queue(&self) -> &ReclaimQueue<Self::Grant> {
        &self.inner.reclaim
    }
}
