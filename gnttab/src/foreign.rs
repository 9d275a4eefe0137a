//! The backend side: mapping another domain's grants, and grant copy.
//!
//! A [`ForeignMap<M, A>`] is a guard over a mapped grant. Its contents are reached only through
//! [`ForeignMap::mem`], a [`SharedMem`] view whose lifetime is tied to the guard, so no borrow
//! can outlive the unmap (DESIGN invariant 3); a read-only mapping yields a read-only view with
//! no store methods. Dropping the guard unmaps.

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
pub trait ForeignMapper: Clone + Send + Sync + 'static {
    /// The platform's record of one live mapping.
    type Mapping: Send + 'static;

    /// Maps `r` read-only or writable. Xen refuses (`GNTST_general_error`) unless the entry
    /// permits access to this domain, and refuses a writable map of a read-only grant.
    fn map(&self, r: ForeignRef, readonly: bool) -> Result<Self::Mapping, GrantError>;
    /// The mapped page. For a read-only mapping this must only ever be read: [`ForeignMap`]
    /// hands out nothing else.
    fn mapping_mem(m: &Self::Mapping) -> SharedMem<'_, Writable>;
    /// Unmaps. On failure the mapping is gone from the caller's hands anyway (the platform
    /// keeps whatever it must not release).
    fn unmap(&self, m: Self::Mapping) -> Result<(), GrantError>;
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
        let mapping = mapper.map(r, A::READONLY)?;
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

    fn raw(&self) -> SharedMem<'_, Writable> {
        match &self.mapping {
            Some(m) => M::mapping_mem(m),
            None => unreachable!("a ForeignMap holds its mapping until consumed"),
        }
    }

    /// Unmaps now, reporting the hypervisor's answer.
    pub fn unmap(mut self) -> Result<(), GrantError> {
        match self.mapping.take() {
            Some(m) => self.mapper.unmap(m),
            None => Ok(()),
        }
    }
}

impl<M: ForeignMapper> ForeignMap<M, ReadOnly> {
    /// The mapped page, read-only. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, ReadOnly> {
        self.raw().read_only()
    }
}

impl<M: ForeignMapper> ForeignMap<M, Writable> {
    /// The mapped page, writable. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        self.raw()
    }
}

impl<M: ForeignMapper, A: Access> Drop for ForeignMap<M, A> {
    fn drop(&mut self) {
        if let Some(m) = self.mapping.take() {
            // Nothing to do on failure: the platform keeps what it could not release.
            let _ = self.mapper.unmap(m);
        }
    }
}
