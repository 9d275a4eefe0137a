//! [`GrantTable`]: the [`Grantor`] for platforms where the guest owns its grant table
//! (a unikernel that set it up with `GNTTABOP_setup_table`, and the simulator).
//!
//! It writes entries with the v1 protocol ([`crate::v1`]), allocates refs from a
//! [`RefAllocator`], and ends grants with the compare-and-swap of [`crate::v1::try_end_access`]:
//! the page comes back only when that succeeds.

use crate::abi::{Domid, GrantRef};
use crate::access::Writable;
use crate::error::GrantError;
use crate::grant::{Grantor, Page, ReclaimQueue, Typestate};
use crate::refs::{OwnedRef, RefAllocator};
use crate::shared::SharedMem;
use crate::v1;
use alloc::sync::Arc;
use core::fmt;

/// What a platform with its own grant table provides.
pub trait TablePlatform: Send + Sync + 'static {
    /// The platform's page type.
    type Page: Page;
    /// This domain's id.
    fn domid(&self) -> Domid;
    /// A fresh, zeroed page.
    fn alloc_page(&self) -> Result<Self::Page, GrantError>;
    /// The grant table (all its frames, contiguous), shared with the hypervisor.
    fn table(&self) -> SharedMem<'_, Writable>;
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
        let cap = v1::capacity(platform.table());
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

impl<P: TablePlatform> Grantor for GrantTable<P> {
    type Page = P::Page;
    type Grant = TableGrant<P::Page>;
    type Ended = P::Page;

    fn domid(&self) -> Domid {
        self.inner.platform.domid()
    }

    fn alloc_page(&self) -> Result<P::Page, GrantError> {
        self.inner.platform.alloc_page()
    }

    fn grant_page(
        &self,
        page: P::Page,
        peer: Domid,
        readonly: bool,
        _: &Typestate,
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
            self.inner.platform.table(),
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

    fn try_end(&self, grant: Self::Grant, _: &Typestate) -> Result<P::Page, Self::Grant> {
        if v1::try_end_access(self.inner.platform.table(), grant.gref.gref()) {
            let TableGrant { page, gref } = grant;
            // The ref came from this table's allocator: freeing it cannot fail.
            let _ = self.inner.refs.lock().free(gref);
            Ok(page)
        } else {
            Err(grant)
        }
    }

    fn reclaim_queue(&self) -> &ReclaimQueue<Self::Grant> {
        &self.inner.reclaim
    }
}
