//! Mapping other domains' grants through `/dev/xen/gntdev`: [`Gntdev`] is the
//! [`ForeignMapper`] of a Linux process.
//!
//! A map is `IOCTL_GNTDEV_MAP_GRANT_REF` (which only reserves an `mmap` index) followed by
//! `mmap` of that index, where the kernel issues the `GNTTABOP_map_grant_ref` hypercalls: so a
//! refusal by Xen (a grant not for us, a writable map of a read-only grant) surfaces as the
//! `mmap` failing, typically `gntdev mmap: EINVAL`. `mmap` is retried a bounded number of
//! times on `EAGAIN` (Xen's `GNTST_eagain`, a paged-out frame). An unmap is `munmap` then
//! `IOCTL_GNTDEV_UNMAP_GRANT_REF`.

use crate::UnmapNotify;
use crate::error::{Device, Errno, Error};
use crate::sys::{self, ForeignEnd, Mapping};
use std::collections::HashMap;
use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xen_gnttab::{
    Access, Domid, ForeignMapper, ForeignRef, GntStatus, GrantError, GrantRef, PAGE_SIZE, ReadOnly,
    SharedMem, Writable,
};

/// How many times `mmap` is tried when the kernel answers `EAGAIN`.
pub const MMAP_EAGAIN_TRIES: u32 = 100;
/// The pause between those tries.
const MMAP_EAGAIN_PAUSE: Duration = Duration::from_millis(1);

/// The [`ForeignMapper`] over `/dev/xen/gntdev`. A cheap handle: clones share one device.
#[derive(Clone, Debug)]
pub struct Gntdev {
    file: Arc<File>,
    /// Live mappings by start address: `(mmap index, pages)`, so that a mapping known only by
    /// its memory can be found again ([`Gntdev::set_unmap_notify_at`]).
    maps: Registry,
}

/// Start address of a mapping → `(mmap index, pages)`.
type Registry = Arc<Mutex<HashMap<usize, (u64, u32)>>>;

/// One live gntdev mapping, untyped (the [`ForeignMapper::Mapping`]); use it through
/// [`ForeignMap`](xen_gnttab::ForeignMap) or as a typed [`GntdevMapping`].
///
/// Dropping it unmaps (`munmap`, then `UNMAP_GRANT_REF`).
#[derive(Debug)]
pub struct RawMapping {
    file: Arc<File>,
    maps: Registry,
    index: u64,
    count: u32,
    map: Option<Mapping>,
}

impl RawMapping {
    fn map(&self) -> &Mapping {
        match &self.map {
            Some(m) => m,
            None => unreachable!("a live gntdev mapping is mapped until consumed"),
        }
    }

    fn set_unmap_notify(&self, offset: usize, notify: UnmapNotify) -> Result<(), Error> {
        const CALL: &str = "SET_UNMAP_NOTIFY";
        let len = self.count as usize * PAGE_SIZE;
        if offset >= len {
            return Err(Error::InvalidArgument {
                device: Device::Gntdev,
                call: CALL,
                what: format!("offset {offset} is outside the {len}-byte mapping"),
            });
        }
        sys::set_unmap_notify(
            &self.file,
            sys::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
            self.index + offset as u64,
            notify.action(),
            notify.port(),
        )
        .map_err(Error::kernel(Device::Gntdev, CALL))
    }

    /// Forgets this mapping in the device's registry (before it goes away).
    fn unregister(&self) {
        if let Some(m) = &self.map {
            lock(&self.maps).remove(&(m.mem::<ReadOnly>().as_ptr() as usize));
        }
    }

    fn unmap(mut self) -> Result<(), Error> {
        self.unregister();
        let result = match self.map.take() {
            Some(m) => m.unmap().map_err(Error::kernel(Device::Gntdev, "munmap")),
            None => Ok(()),
        };
        // Release the index even if munmap failed (the pages then stay mapped until exit).
        let released = sys::gntdev_unmap(&self.file, self.index, self.count)
            .map_err(Error::kernel(Device::Gntdev, "UNMAP_GRANT_REF"));
        self.count = 0;
        result.and(released)
    }
}

impl Drop for RawMapping {
    fn drop(&mut self) {
        if self.count > 0 {
            self.unregister();
            drop(self.map.take());
            let _ = sys::gntdev_unmap(&self.file, self.index, self.count);
        }
    }
}

/// A mapping of one or more foreign grants with access `A`: only a `Writable` mapping has a
/// writable view. Unmapped on drop, or by [`GntdevMapping::unmap`], which reports errors.
#[derive(Debug)]
pub struct GntdevMapping<A: Access> {
    raw: RawMapping,
    _access: PhantomData<A>,
}

impl<A: Access> GntdevMapping<A> {
    /// Length in bytes (pages × 4096).
    pub fn len(&self) -> usize {
        self.raw.map().len()
    }

    /// Never true: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// See [`UnmapNotify`]: when this mapping goes away (unmapped, or the process dies), the
    /// kernel clears the byte at `offset` in the peer's page and/or signals the event channel.
    pub fn set_unmap_notify(&self, offset: usize, notify: UnmapNotify) -> Result<(), Error> {
        self.raw.set_unmap_notify(offset, notify)
    }

    /// Unmaps now.
    pub fn unmap(self) -> Result<(), Error> {
        self.raw.unmap()
    }
}

impl GntdevMapping<ReadOnly> {
    /// The mapped pages, read-only. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, ReadOnly> {
        self.raw.map().mem()
    }
}

impl GntdevMapping<Writable> {
    /// The mapped pages. The borrow ends before the unmap.
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        self.raw.map().mem()
    }
}

impl Gntdev {
    /// Opens `/dev/xen/gntdev`. Fails with [`Error::DeviceAbsent`] outside a Xen domain.
    pub fn open() -> Result<Gntdev, Error> {
        Self::open_at(Device::Gntdev.path())
    }

    /// Opens the gntdev device at `path` (for tests and unusual device layouts).
    pub fn open_at(path: impl AsRef<Path>) -> Result<Gntdev, Error> {
        Ok(Gntdev {
            file: Arc::new(crate::open_device(Device::Gntdev, path.as_ref(), false)?),
            maps: Arc::default(),
        })
    }

    /// [`UnmapNotify`] for a live mapping of this handle known only by its memory (`page`
    /// must lie inside one; `offset` is a byte of `page`): for code that reaches the mapping
    /// through the [`ForeignMapper`] traits, such as a vchan client arming `cli_live`.
    pub fn set_unmap_notify_at(
        &self,
        page: SharedMem<'_, Writable>,
        offset: usize,
        notify: UnmapNotify,
    ) -> Result<(), Error> {
        const CALL: &str = "SET_UNMAP_NOTIFY";
        let addr = page.as_ptr() as usize;
        let found = lock(&self.maps).iter().find_map(|(start, (index, pages))| {
            let end = start + *pages as usize * PAGE_SIZE;
            (addr >= *start && addr < end).then(|| (addr - start, *index, end - addr))
        });
        let Some((rel, index, room)) = found else {
            return Err(Error::InvalidArgument {
                device: Device::Gntdev,
                call: CALL,
                what: format!("{addr:#x} is not in a mapping of this handle"),
            });
        };
        if offset >= room.min(page.len()) {
            return Err(Error::InvalidArgument {
                device: Device::Gntdev,
                call: CALL,
                what: format!("offset {offset} is outside the page"),
            });
        }
        sys::set_unmap_notify(
            &self.file,
            sys::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
            index + (rel + offset) as u64,
            notify.action(),
            notify.port(),
        )
        .map_err(Error::kernel(Device::Gntdev, CALL))
    }

    /// Maps `refs` of `domid` contiguously, with access `A` (`PROT_READ` only for
    /// `ReadOnly`). Xen refuses a writable map of a read-only grant: the error is then
    /// `gntdev mmap: EINVAL`.
    pub fn map_grants<A: Access>(
        &self,
        domid: Domid,
        refs: &[GrantRef],
    ) -> Result<GntdevMapping<A>, Error> {
        Ok(GntdevMapping {
            raw: self.map_raw(domid, refs, !A::READONLY)?,
            _access: PhantomData,
        })
    }

    fn map_raw(
        &self,
        domid: Domid,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<RawMapping, Error> {
        let count = u32::try_from(refs.len())
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| Error::InvalidArgument {
                device: Device::Gntdev,
                call: "MAP_GRANT_REF",
                what: format!("{} grants", refs.len()),
            })?;
        let pairs: Vec<(u32, u32)> = refs.iter().map(|r| (domid.0.into(), r.0)).collect();
        let index = sys::gntdev_map(&self.file, &pairs)
            .map_err(Error::kernel(Device::Gntdev, "MAP_GRANT_REF"))?;
        // From here on, dropping `raw` releases the index.
        let mut raw = RawMapping {
            file: self.file.clone(),
            maps: self.maps.clone(),
            index,
            count,
            map: None,
        };
        let len = refs.len() * PAGE_SIZE;
        let mut tries = 0;
        let map = loop {
            tries += 1;
            match Mapping::new(&self.file, len, index, writable) {
                Ok(m) => break m,
                Err(Errno(libc::EAGAIN)) if tries < MMAP_EAGAIN_TRIES => {
                    std::thread::sleep(MMAP_EAGAIN_PAUSE)
                }
                Err(e) => return Err(Error::kernel(Device::Gntdev, "mmap")(e)),
            }
        };
        lock(&self.maps).insert(map.mem::<ReadOnly>().as_ptr() as usize, (index, count));
        raw.map = Some(map);
        Ok(raw)
    }

    /// `GRANT_COPY` of `dst.len()` bytes from `src` at `offset` into `dst`.
    pub fn copy_from(
        &self,
        src: ForeignRef,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), GrantError> {
        xen_gnttab::foreign::check_copy(offset, dst.len())?;
        let end = ForeignEnd {
            domid: src.domid.0,
            gref: src.gref.0,
            offset: offset as u16,
        };
        let status = sys::gntdev_copy_from(&self.file, end, dst)
            .map_err(Error::kernel(Device::Gntdev, "GRANT_COPY"))?;
        copy_status(status, src)
    }

    /// `GRANT_COPY` of `src` into `dst` at `offset`.
    pub fn copy_to(&self, src: &[u8], dst: ForeignRef, offset: usize) -> Result<(), GrantError> {
        xen_gnttab::foreign::check_copy(offset, src.len())?;
        let end = ForeignEnd {
            domid: dst.domid.0,
            gref: dst.gref.0,
            offset: offset as u16,
        };
        let status = sys::gntdev_copy_to(&self.file, src, end)
            .map_err(Error::kernel(Device::Gntdev, "GRANT_COPY"))?;
        copy_status(status, dst)
    }
}

/// A copy segment's `GNTST_*` status as a result.
fn copy_status(status: i16, r: ForeignRef) -> Result<(), GrantError> {
    match GntStatus::from_code(status) {
        Ok(()) => Ok(()),
        Err(Some(status)) => Err(GrantError::Hypervisor {
            op: "copy",
            domid: r.domid,
            gref: r.gref,
            status,
        }),
        Err(None) => Err(GrantError::Platform(
            "gntdev GRANT_COPY: unknown GNTST status",
        )),
    }
}

/// The registry, even if a panicking thread poisoned it (it holds plain numbers).
fn lock(maps: &Registry) -> std::sync::MutexGuard<'_, HashMap<usize, (u64, u32)>> {
    maps.lock().unwrap_or_else(|p| p.into_inner())
}

// SAFETY: `map` maps exactly the one grant named (`MAP_GRANT_REF` + `mmap`, `PROT_READ` only
// when read-only, so the kernel and Xen refuse writes to a read-only grant); the views borrow
// the `RawMapping`, whose `mmap` lives until `unmap` consumes it; `mapping_mem` is read-only
// and `mapping_mem_mut` is only called for writable maps (the trait's contract), so no store
// reaches a `PROT_READ` page; copies are `GRANT_COPY` segments checked to stay in the page.
#[allow(unsafe_code)]
unsafe impl ForeignMapper for Gntdev {
    type Mapping = RawMapping;

    unsafe fn map(&self, r: ForeignRef, readonly: bool) -> Result<RawMapping, GrantError> {
        Ok(self.map_raw(r.domid, &[r.gref], !readonly)?)
    }

    fn mapping_mem(m: &RawMapping) -> SharedMem<'_, ReadOnly> {
        m.map().mem()
    }

    unsafe fn mapping_mem_mut(m: &RawMapping) -> SharedMem<'_, Writable> {
        m.map().mem()
    }

    unsafe fn unmap(&self, m: RawMapping) -> Result<(), GrantError> {
        Ok(m.unmap()?)
    }

    fn copy_from_foreign(
        &self,
        src: ForeignRef,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), GrantError> {
        self.copy_from(src, offset, dst)
    }

    fn copy_to_foreign(
        &self,
        src: &[u8],
        dst: ForeignRef,
        offset: usize,
    ) -> Result<(), GrantError> {
        self.copy_to(src, dst, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_gnttab::ForeignMap;

    #[test]
    fn absent_device() {
        assert!(matches!(
            Gntdev::open_at("/nonexistent-xen/gntdev"),
            Err(Error::DeviceAbsent {
                device: Device::Gntdev,
                ..
            })
        ));
    }

    #[test]
    fn refusals_name_the_call() {
        let g = Gntdev::open_at("/dev/null").unwrap();
        let r = ForeignRef {
            domid: Domid(0),
            gref: GrantRef(9),
        };
        let e = ForeignMap::<Gntdev, Writable>::map(&g, r).unwrap_err();
        assert_eq!(e.to_string(), "gntdev MAP_GRANT_REF: ENOTTY (25)");
        let e = g.map_grants::<ReadOnly>(Domid(0), &[]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let mut buf = [0u8; 16];
        assert_eq!(
            g.copy_from(r, 4090, &mut buf),
            Err(GrantError::CopyCrossesPage {
                offset: 4090,
                len: 16
            })
        );
        assert_eq!(
            g.copy_from(r, 0, &mut buf).unwrap_err().to_string(),
            "gntdev GRANT_COPY: ENOTTY (25)"
        );
    }

    #[test]
    fn copy_statuses_map_to_hypervisor_errors() {
        let r = ForeignRef {
            domid: Domid(3),
            gref: GrantRef(12),
        };
        assert_eq!(copy_status(0, r), Ok(()));
        assert_eq!(
            copy_status(-8, r).unwrap_err().status(),
            Some(GntStatus::PermissionDenied)
        );
        assert!(matches!(copy_status(-99, r), Err(GrantError::Platform(_))));
    }
}
