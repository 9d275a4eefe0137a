//! Granting through `/dev/xen/gntalloc`: [`Gntalloc`] is the [`Grantor`] of a Linux process.
//!
//! The kernel owns the grant table. `IOCTL_GNTALLOC_ALLOC_GREF` creates grants together with
//! fresh pages, which the process then maps (`mmap` at the returned index). So
//! [`Grantor::grant_page`] copies the caller's private page into a fresh gntalloc page, and
//! that page is what the peer sees from then on.
//!
//! Ending a grant is `IOCTL_GNTALLOC_DEALLOC_GREF` plus `munmap`; the kernel then ends the
//! grant itself, deferring it while the peer still maps the page (`gnttab_end_foreign_access`),
//! and userspace cannot observe when that happens. So `try_end` always succeeds and gives back
//! a [`Released`] token, not a page: giving a grant back consumes its memory, and nothing in
//! this API can touch that memory again (DESIGN invariants 1 and 2, XSA-396).

use crate::UnmapNotify;
use crate::error::{Device, Error};
use crate::sys::{self, Mapping};
use std::collections::HashMap;
use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};
use xen_gnttab::{
    Access, Domid, Frame, GrantError, GrantRef, Grantor, PAGE_SIZE, Page, ReclaimQueue, SharedMem,
    SharedRegion, Writable,
};

/// A private, page-aligned, zeroed page, not yet granted.
///
/// Userspace does not know frame numbers: [`Page::frame`] is the placeholder
/// [`PrivatePage::NO_FRAME`], which nothing passes to the hypervisor (gntalloc grants its own
/// pages).
#[derive(Debug)]
pub struct PrivatePage {
    mem: SharedRegion,
}

impl PrivatePage {
    /// The frame number every private page reports.
    pub const NO_FRAME: Frame = Frame(u64::MAX);

    /// A zeroed page.
    pub fn new() -> PrivatePage {
        PrivatePage {
            mem: SharedRegion::new_zeroed(PAGE_SIZE),
        }
    }
}

impl Default for PrivatePage {
    fn default() -> Self {
        Self::new()
    }
}

impl Page for PrivatePage {
    fn frame(&self) -> Frame {
        Self::NO_FRAME
    }
    fn mem(&self) -> SharedMem<'_, Writable> {
        self.mem.mem()
    }
}

/// Proof that a grant was given back to the kernel (deallocated and unmapped).
///
/// It holds no memory: the kernel ends the grant once the peer lets go, and frees the page.
#[derive(Debug)]
#[must_use = "a Released token records that the grant's memory is gone"]
pub struct Released {
    grefs: Vec<GrantRef>,
}

impl Released {
    /// The grant references that were given back (for logs; the kernel may reuse them).
    pub fn grefs(&self) -> &[GrantRef] {
        &self.grefs
    }
}

/// One live gntalloc allocation: its grant references and its mapping.
///
/// Dropping it gives the grants back (munmap, then `DEALLOC_GREF`); that is always safe here
/// because the kernel defers the real end until the peer unmaps.
#[derive(Debug)]
pub struct GntallocGrant {
    file: Arc<File>,
    index: u64,
    grefs: Vec<GrantRef>,
    map: Option<Mapping>,
}

impl GntallocGrant {
    fn mem(&self) -> SharedMem<'_, Writable> {
        match &self.map {
            Some(m) => m.mem(),
            None => unreachable!("a live gntalloc grant is mapped until dropped"),
        }
    }

    /// Sets what the kernel does when the grant is finally freed (this process unmapped it
    /// or died): clear the byte at `offset` in the granted memory, and/or signal an event
    /// channel. The peer sees either (libxenvchan's "live" bytes rely on it).
    fn set_unmap_notify(&self, offset: usize, notify: UnmapNotify) -> Result<(), Error> {
        const CALL: &str = "SET_UNMAP_NOTIFY";
        let len = self.grefs.len() * PAGE_SIZE;
        if offset >= len {
            return Err(Error::InvalidArgument {
                device: Device::Gntalloc,
                call: CALL,
                what: format!("offset {offset} is outside the {len}-byte grant"),
            });
        }
        sys::set_unmap_notify(
            &self.file,
            sys::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
            self.index + offset as u64,
            notify.action(),
            notify.port(),
        )
        .map_err(Error::kernel(Device::Gntalloc, CALL))
    }

    fn release(mut self) -> Released {
        self.give_back();
        Released {
            grefs: std::mem::take(&mut self.grefs),
        }
    }

    fn give_back(&mut self) {
        if let Some(m) = self.map.take() {
            // Unmapping our own valid mapping cannot fail; if it did, the pages stay mapped
            // (and so allocated) in this process, which is still safe.
            let _ = m.unmap();
            // Fails only for an unknown index, which would mean it was already given back.
            let _ = sys::gntalloc_dealloc(&self.file, self.index, self.grefs.len() as u32);
        }
    }
}

impl Drop for GntallocGrant {
    fn drop(&mut self) {
        self.give_back();
    }
}

struct Inner {
    file: Arc<File>,
    domid: Domid,
    reclaim: ReclaimQueue<GntallocGrant>,
    /// Where each single-page grant made through the [`Grantor`] is mapped in the device
    /// (its `mmap` index), for [`Gntalloc::set_unmap_notify`].
    indices: Mutex<HashMap<GrantRef, u64>>,
}

/// The [`Grantor`] over `/dev/xen/gntalloc`. A cheap handle: clones share one device.
#[derive(Clone)]
pub struct Gntalloc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gntalloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gntalloc")
            .field("domid", &self.inner.domid)
            .field("reclaim", &self.inner.reclaim)
            .finish()
    }
}

impl Gntalloc {
    /// Opens `/dev/xen/gntalloc` for domain `domid` (this domain's id, for example from
    /// [`Xenbus::own_domid`](crate::Xenbus::own_domid)). Fails with [`Error::DeviceAbsent`]
    /// outside a Xen domain.
    pub fn open(domid: Domid) -> Result<Gntalloc, Error> {
        Self::open_at(Device::Gntalloc.path(), domid)
    }

    /// Opens the gntalloc device at `path` (for tests and unusual device layouts).
    pub fn open_at(path: impl AsRef<Path>, domid: Domid) -> Result<Gntalloc, Error> {
        let file = crate::open_device(Device::Gntalloc, path.as_ref(), false)?;
        Ok(Gntalloc {
            inner: Arc::new(Inner {
                file: Arc::new(file),
                domid,
                reclaim: ReclaimQueue::new(),
                indices: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// `ALLOC_GREF` of `pages` pages for `peer`, then `mmap` of them.
    fn alloc(&self, peer: Domid, pages: usize, writable: bool) -> Result<GntallocGrant, Error> {
        let count = u32::try_from(pages)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| Error::InvalidArgument {
                device: Device::Gntalloc,
                call: "ALLOC_GREF",
                what: format!("{pages} pages"),
            })?;
        let file = &self.inner.file;
        let (index, refs) = sys::gntalloc_alloc(file, peer.0, writable, count)
            .map_err(Error::kernel(Device::Gntalloc, "ALLOC_GREF"))?;
        let mut grant = GntallocGrant {
            file: file.clone(),
            index,
            grefs: refs.into_iter().map(GrantRef).collect(),
            map: None,
        };
        // On failure, dropping `grant` deallocates the grants (nothing is mapped yet).
        let map = Mapping::new(file, pages * PAGE_SIZE, index, true)
            .map_err(Error::kernel(Device::Gntalloc, "mmap"));
        match map {
            Ok(m) => grant.map = Some(m),
            Err(e) => {
                let _ = sys::gntalloc_dealloc(file, index, count);
                return Err(e);
            }
        }
        Ok(grant)
    }

    /// Grants `pages` fresh zeroed pages to `peer` in one `ALLOC_GREF`, mapped contiguously:
    /// for rings and buffers spanning several pages. Access `A` is the peer's.
    pub fn grant_block<A: Access>(
        &self,
        peer: Domid,
        pages: usize,
    ) -> Result<GrantBlock<A>, Error> {
        if !peer.is_real() {
            return Err(Error::InvalidArgument {
                device: Device::Gntalloc,
                call: "ALLOC_GREF",
                what: format!("{peer:?} is not a domain"),
            });
        }
        Ok(GrantBlock {
            grant: self.alloc(peer, pages, !A::READONLY)?,
            peer,
            _access: PhantomData,
        })
    }

    /// [`UnmapNotify`] for a single-page grant made through [`Granted`](xen_gnttab::Granted):
    /// when the grant is finally freed, the kernel clears the byte at `offset` and/or signals
    /// the event channel.
    pub fn set_unmap_notify<A: Access>(
        &self,
        granted: &xen_gnttab::Granted<Gntalloc, A>,
        offset: usize,
        notify: UnmapNotify,
    ) -> Result<(), Error> {
        self.set_unmap_notify_gref(granted.gref(), offset, notify)
    }

    /// [`UnmapNotify`] for a live single-page grant of this handle known only by its
    /// reference (for code that reaches it through the [`Grantor`] traits, such as a vchan
    /// server arming `srv_live`).
    pub fn set_unmap_notify_gref(
        &self,
        gref: GrantRef,
        offset: usize,
        notify: UnmapNotify,
    ) -> Result<(), Error> {
        const CALL: &str = "SET_UNMAP_NOTIFY";
        let index = self
            .inner
            .indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&gref)
            .copied()
            .ok_or_else(|| Error::InvalidArgument {
                device: Device::Gntalloc,
                call: CALL,
                what: format!("{gref:?} was not granted by this handle"),
            })?;
        if offset >= PAGE_SIZE {
            return Err(Error::InvalidArgument {
                device: Device::Gntalloc,
                call: CALL,
                what: format!("offset {offset} is outside the page"),
            });
        }
        sys::set_unmap_notify(
            &self.inner.file,
            sys::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
            index + offset as u64,
            notify.action(),
            notify.port(),
        )
        .map_err(Error::kernel(Device::Gntalloc, CALL))
    }
}

// SAFETY: `grant_page` makes a fresh gntalloc grant (a new ref, to exactly `peer`, writable
// only when asked) and fills it from the page, which it then drops (it was never granted);
// on failure nothing was granted and the page comes back. Ending is the kernel's: after
// `DEALLOC_GREF` + `munmap` the kernel ends the grant once the peer unmaps and never reuses
// the page before, and `Released` gives userspace no way to touch that memory again, so
// `try_end` may always answer true and `finish_end` hands back only the token.
#[allow(unsafe_code)]
unsafe impl Grantor for Gntalloc {
    type Page = PrivatePage;
    type Grant = GntallocGrant;
    type Ended = Released;

    fn domid(&self) -> Domid {
        self.inner.domid
    }

    fn alloc_page(&self) -> Result<PrivatePage, GrantError> {
        Ok(PrivatePage::new())
    }

    unsafe fn grant_page(
        &self,
        page: PrivatePage,
        peer: Domid,
        readonly: bool,
    ) -> Result<GntallocGrant, (PrivatePage, GrantError)> {
        let grant = match self.alloc(peer, 1, !readonly) {
            Ok(g) => g,
            Err(e) => return Err((page, e.into())),
        };
        let mut contents = vec![0u8; PAGE_SIZE];
        page.mem().read_bytes(0, &mut contents);
        grant.mem().write_bytes(0, &contents);
        self.inner
            .indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(grant.grefs[0], grant.index);
        Ok(grant)
    }

    fn grant_ref(grant: &GntallocGrant) -> GrantRef {
        grant.grefs[0]
    }

    fn grant_mem(grant: &GntallocGrant) -> SharedMem<'_, Writable> {
        grant.mem()
    }

    unsafe fn try_end(&self, _grant: &mut GntallocGrant) -> bool {
        true
    }

    unsafe fn finish_end(&self, grant: GntallocGrant) -> Released {
        self.inner
            .indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&grant.grefs[0]);
        grant.release()
    }

    fn reclaim_queue(&self) -> &ReclaimQueue<GntallocGrant> {
        &self.inner.reclaim
    }
}

/// Several pages granted to one peer by one `ALLOC_GREF`, mapped contiguously here. Access
/// `A` is the peer's; this process may always write.
///
/// [`GrantBlock::release`] (or dropping it) gives the grants back and consumes the memory,
/// as for [`Released`].
#[derive(Debug)]
pub struct GrantBlock<A: Access> {
    grant: GntallocGrant,
    peer: Domid,
    _access: PhantomData<A>,
}

impl<A: Access> GrantBlock<A> {
    /// The grant references, one per page, in order.
    pub fn grefs(&self) -> &[GrantRef] {
        &self.grant.grefs
    }

    /// The domain the pages are granted to.
    pub fn peer(&self) -> Domid {
        self.peer
    }

    /// All the pages. The peer may be writing them (if `A` is `Writable`): copy out,
    /// validate, never trust.
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        self.grant.mem()
    }

    /// See [`UnmapNotify`]: `offset` is a byte of the block.
    pub fn set_unmap_notify(&self, offset: usize, notify: UnmapNotify) -> Result<(), Error> {
        self.grant.set_unmap_notify(offset, notify)
    }

    /// Gives the grants back; the memory is gone from this process.
    pub fn release(self) -> Released {
        self.grant.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_gnttab::{Granted, ReadOnly};

    #[test]
    fn private_pages_are_zeroed_with_no_frame() {
        let p = PrivatePage::new();
        assert_eq!(p.frame(), PrivatePage::NO_FRAME);
        let mut b = vec![1u8; PAGE_SIZE];
        p.mem().read_bytes(0, &mut b);
        assert!(b.iter().all(|x| *x == 0));
        assert_eq!(p.mem().as_ptr() as usize % PAGE_SIZE, 0);
    }

    #[test]
    fn absent_device() {
        let e = Gntalloc::open_at("/nonexistent-xen/gntalloc", Domid(0)).unwrap_err();
        assert!(matches!(
            e,
            Error::DeviceAbsent {
                device: Device::Gntalloc,
                ..
            }
        ));
    }

    #[test]
    fn kernel_refusals_give_the_page_back_with_a_named_error() {
        let g = Gntalloc::open_at("/dev/null", Domid(1)).unwrap();
        let page = g.alloc_page().unwrap();
        page.mem().write_bytes(0, b"keep me");
        let (page, e) = Granted::<_, ReadOnly>::new(&g, page, Domid(0)).unwrap_err();
        assert_eq!(e.to_string(), "gntalloc ALLOC_GREF: ENOTTY (25)");
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        let mut b = [0u8; 7];
        page.mem().read_bytes(0, &mut b);
        assert_eq!(&b, b"keep me");
        let e = g.grant_block::<Writable>(Domid(0), 2).unwrap_err();
        assert_eq!(e.to_string(), "gntalloc ALLOC_GREF: ENOTTY");
        let e = g.grant_block::<Writable>(Domid(0), 0).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let e = g.grant_block::<Writable>(Domid::SELF, 1).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert_eq!(g.domid(), Domid(1));
    }
}
