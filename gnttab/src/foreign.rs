//! The backend side: mapping another domain's grants, and grant copy.
//!
//! A [`ForeignMap<M, A>`] is a guard over a mapped grant. Its contents are reached only through
//! [`ForeignMap::mem`], a [`SharedMem`] view whose lifetime is tied to the guard, so no borrow
//! can outlive the unmap (DESIGN invariant 3); a read-only mapping yields a read-only view with
//! no store methods. Dropping the guard unmaps.
//!
//! The raw operations ([`ForeignMapper::map`], [`ForeignMapper::unmap`] and the writable view
//! [`ForeignMapper::mapping_mem_mut`]) are `unsafe fn`s of an `unsafe trait`: a safe program
//! cannot hold a raw mapping outside a [`ForeignMap`], unmap one twice or through another
//! domain's mapper, or get a writable view of a read-only mapping (on Linux that memory is
//! mapped `PROT_READ`: a store would fault).
#![allow(unsafe_code)] // Calls the `unsafe` raw methods of `ForeignMapper`.

use crate::abi::{Domid, GrantRef, PAGE_SIZE};
use crate::access::{Access, ReadOnly, Writable};
use crate::error::GrantError;
use crate::shared::SharedMem;
use core::fmt;
use core::marker::PhantomData;

/// One foreign grant, as named by its owner: `(domid, gref)` plus a byte offset for copies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ForeignRef {
    /// The granting domain.
    pub domid: Domid,
    /// Its grant reference.
    pub gref: GrantRef,
}

/// The mapping half of a platform (`GNTTABOP_map_grant_ref`/`unmap_grant_ref`/`copy`).
///
/// Drivers are generic over it and map through [`ForeignMap`]; grant copies are safe calls
/// (the hypervisor checks every copy against the granter's entry).
///
/// # Safety
///
/// [`ForeignMap`] trusts an implementation to keep invariant 3: [`map`](ForeignMapper::map)
/// maps exactly the grant named, read-only when asked (a read-only mapping's memory is never
/// writable through this platform), and succeeds only where the hypervisor permits it;
/// [`mapping_mem`](ForeignMapper::mapping_mem) and
/// [`mapping_mem_mut`](ForeignMapper::mapping_mem_mut) return views of exactly the mapped
/// page that stay valid until [`unmap`](ForeignMapper::unmap); `unmap` releases the
/// mapping, or keeps whatever it could not release so the memory stays valid; the copy calls
/// touch only the caller's buffer and the named grant, within the page.
pub unsafe trait ForeignMapper: Clone + Send + Sync + 'static {
    /// The platform's record of one live mapping.
    type Mapping: Send + 'static;

    /// Maps `r` read-only or writable. Xen refuses (`GNTST_general_error`) unless the entry
    /// permits access to this domain, and refuses a writable map of a read-only grant.
    ///
    /// # Safety
    ///
    /// The caller must keep the mapping until it passes it to [`unmap`](ForeignMapper::unmap)
    /// of this mapper (or a clone), once, and must not use a view of it after that.
    unsafe fn map(&self, r: ForeignRef, readonly: bool) -> Result<Self::Mapping, GrantError>;
    /// The mapped page, read-only.
    fn mapping_mem(m: &Self::Mapping) -> SharedMem<'_, ReadOnly>;
    /// The mapped page, writable.
    ///
    /// # Safety
    ///
    /// `m` must have been mapped writable (`readonly == false`).
    unsafe fn mapping_mem_mut(m: &Self::Mapping) -> SharedMem<'_, Writable>;
    /// Unmaps. On failure the mapping is gone from the caller's hands anyway (the platform
    /// keeps whatever it must not release).
    ///
    /// # Safety
    ///
    /// `m` must come from [`map`](ForeignMapper::map) of this mapper (or a clone), and no view
    /// of it may be used afterwards.
    unsafe fn unmap(&self, m: Self::Mapping) -> Result<(), GrantError>;
    /// `GNTTABOP_copy` from a foreign grant into private memory.
    fn copy_from_foreign(
        &self,
        src: ForeignRef,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), GrantError>;
    /// `GNTTABOP_copy` from private memory into a foreign (writable) grant.
    fn copy_to_foreign(&self, src: &[u8], dst: ForeignRef, offset: usize)
    -> Result<(), GrantError>;
}

/// Checks a grant copy's offset and length the way Xen does (`GNTST_bad_copy_arg`).
pub fn check_copy(offset: usize, len: usize) -> Result<(), GrantError> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(GrantError::CopyCrossesPage { offset, len }),
    }
}

/// A mapped foreign grant. Unmapped on drop (or by [`ForeignMap::unmap`], which reports
/// errors).
///
/// ```
/// # fn demo<M: xen_gnttab::ForeignMapper>(mapper: &M, r: xen_gnttab::ForeignRef) -> Result<(), xen_gnttab::GrantError> {
/// use xen_gnttab::{ForeignMap, ReadOnly};
/// let map = ForeignMap::<M, ReadOnly>::map(mapper, r)?;
/// let mut hdr = [0u8; 16];
/// map.mem().read_bytes(0, &mut hdr); // a private copy: validate it, then use it
/// map.unmap()?;
/// # Ok(()) }
/// ```
pub struct ForeignMap<M: ForeignMapper, A: Access> {
    mapping: Option<M::Mapping>,
    mapper: M,
    target: ForeignRef,
    _access: PhantomData<A>,
}

impl<M: ForeignMapper, A: Access> fmt::Debug for ForeignMap<M, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignMap")
            .field("target", &self.target)
            .field("access", &A::NAME)
            .finish()
    }
}

impl<M: ForeignMapper, A: Access> ForeignMap<M, A> {
    /// Maps `r` with access `A`.
    pub fn map(mapper: &M, r: ForeignRef) -> Result<Self, GrantError> {
        // SAFETY: the mapping stays in the guard until `unmap` or `drop` passes it, once, to
        // the same mapper's `unmap`; every view borrows the guard, so none outlives that.
        let mapping = unsafe { mapper.map(r, A::READONLY) }?;
        Ok(ForeignMap {
            mapping: Some(mapping),
            mapper: mapper.clone(),
            target: r,
            _access: PhantomData,
        })
    }

    /// Which grant this maps.
    pub fn target(&self) -> ForeignRef {
        self.target
    }

    fn mapping(&self) -> &M::Mapping {
        match &self.mapping {
            Some(m) => m,
            None => unreachable!("a ForeignMap holds its mapping until consumed"),
        }
    }

    /// Unmaps now, reporting the hypervisor's answer.
    pub fn unmap(mut self) -> Result<(), GrantError> {
        match self.mapping.take() {
            // SAFETY: made by this mapper in `map`, passed here once (`take`), and `self` (which
            // every view borrows) is consumed.
            Some(m) => unsafe { self.mapper.unmap(m) },
            None => Ok(()),
        }
    }
}

impl<M: ForeignMapper> ForeignMap<M, ReadOnly> {
    /// The mapped page, read-only. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, ReadOnly> {
        M::mapping_mem(self.mapping())
    }
}

impl<M: ForeignMapper> ForeignMap<M, Writable> {
    /// The mapped page, writable. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        // SAFETY: `A` is `Writable`, so `map` asked for a writable mapping.
        unsafe { M::mapping_mem_mut(self.mapping()) }
    }
}

impl<M: ForeignMapper, A: Access> Drop for ForeignMap<M, A> {
    fn drop(&mut self) {
        if let Some(m) = self.mapping.take() {
            // Nothing to do on failure: the platform keeps what it could not release.
            // SAFETY: made by this mapper in `map`, passed here once (`take`); no view can be
            // alive while the guard is being dropped.
            let _ = unsafe { self.mapper.unmap(m) };
        }
    }
}
