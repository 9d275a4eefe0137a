//! The kernel interface: the ioctl structures of Linux's `include/uapi/xen/{gntalloc,gntdev,
//! evtchn}.h` and the only `unsafe` of this crate (`ioctl`, `mmap`, `munmap`, `poll`).
//!
//! Every function here is safe to call: each builds the argument the kernel expects for one
//! request, sized for what that request reads and writes, and returns the kernel's answer as an
//! [`Errno`]. Higher modules add the device and call names (see [`crate::Error`]).
//!
//! The structures are `#[repr(C)]` images of the C ones, with the C compiler's implicit padding
//! made explicit (`_pad`) so that they are plain bytes (`zerocopy`). Sizes and offsets are
//! asserted below and compared with `/usr/include/xen/sys/*.h` by `cargo xtask abi`.
#![allow(unsafe_code)] // The one module of this crate that talks to the kernel directly.

use crate::error::Errno;
use static_assertions::const_assert_eq;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::time::Duration;
use xen_gnttab::{Access, SharedMem};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `_IOC(_IOC_NONE, ty, nr, size)`: every Xen device ioctl has direction "none" (the drivers
/// copy in and out themselves), so the number is `size << 16 | ty << 8 | nr`.
pub const fn ioc_none(ty: u8, nr: u8, size: usize) -> u32 {
    ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `struct ioctl_gntalloc_alloc_gref` with one `gref_ids` entry (the C `[1]` tail).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntallocAllocGref {
    /// In: the domain given access.
    pub domid: u16,
    /// In: `GNTALLOC_FLAG_WRITABLE` or 0.
    pub flags: u16,
    /// In: number of pages.
    pub count: u32,
    /// Out: the `mmap` offset of the new pages.
    pub index: u64,
    /// Out: the first grant reference (more follow in the caller's buffer).
    pub gref_ids: [u32; 1],
    /// The C struct's trailing padding.
    pub _pad: u32,
}

/// `struct ioctl_gntalloc_dealloc_gref`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntallocDeallocGref {
    /// The `index` the allocation returned.
    pub index: u64,
    /// Number of pages.
    pub count: u32,
    /// The C struct's trailing padding.
    pub _pad: u32,
}

/// `struct ioctl_gntalloc_unmap_notify` and `struct ioctl_gntdev_unmap_notify` (identical).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct UnmapNotify {
    /// The `mmap` offset of the byte to clear (or any byte of the page).
    pub index: u64,
    /// `UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT`.
    pub action: u32,
    /// The event channel to notify.
    pub event_channel_port: u32,
}

/// `struct ioctl_gntdev_grant_ref`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntdevGrantRef {
    /// The granting domain.
    pub domid: u32,
    /// Its grant reference.
    pub ref_: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` with one `refs` entry (the C `[1]` tail).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntdevMapGrantRef {
    /// In: number of grants.
    pub count: u32,
    /// Padding (named `pad` in C).
    pub pad: u32,
    /// Out: the `mmap` offset of the mapping.
    pub index: u64,
    /// In: the first grant (more follow in the caller's buffer).
    pub refs: [GntdevGrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntdevUnmapGrantRef {
    /// The `index` the map returned.
    pub index: u64,
    /// Number of pages.
    pub count: u32,
    /// Padding (named `pad` in C).
    pub pad: u32,
}

/// `struct ioctl_gntdev_grant_copy_segment`. `source` and `dest` are the C unions of a
/// `void *virt` and `struct { u32 ref; u16 offset; u16 domid; } foreign`, held as their 8 bytes.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntdevGrantCopySegment {
    /// Source: an address (`virt`) or a foreign grant (`foreign`), built by `copy_ptr`.
    pub source: u64,
    /// Destination, likewise.
    pub dest: u64,
    /// Bytes to copy (at most a page, within one page at each end).
    pub len: u16,
    /// `GNTCOPY_source_gref` / `GNTCOPY_dest_gref`.
    pub flags: u16,
    /// Out: the `GNTST_*` status.
    pub status: i16,
    /// The C struct's trailing padding.
    pub _pad: u16,
}

/// `struct ioctl_gntdev_grant_copy`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GntdevGrantCopy {
    /// Number of segments.
    pub count: u32,
    /// The C struct's padding before the pointer.
    pub _pad: u32,
    /// `struct ioctl_gntdev_grant_copy_segment *segments`.
    pub segments: u64,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    /// The remote domain.
    pub remote_domain: u32,
    /// Its unbound port.
    pub remote_port: u32,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvtchnBindUnboundPort {
    /// The domain allowed to bind the other end.
    pub remote_domain: u32,
}

/// `struct ioctl_evtchn_unbind` and `struct ioctl_evtchn_notify` (both one `port`).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvtchnPortArg {
    /// A local port.
    pub port: u32,
}

const_assert_eq!(size_of::<GntallocAllocGref>(), 24);
const_assert_eq!(size_of::<GntallocDeallocGref>(), 16);
const_assert_eq!(size_of::<UnmapNotify>(), 16);
const_assert_eq!(size_of::<GntdevGrantRef>(), 8);
const_assert_eq!(size_of::<GntdevMapGrantRef>(), 24);
const_assert_eq!(size_of::<GntdevUnmapGrantRef>(), 16);
const_assert_eq!(size_of::<GntdevGrantCopySegment>(), 24);
const_assert_eq!(size_of::<GntdevGrantCopy>(), 16);
const_assert_eq!(size_of::<EvtchnBindInterdomain>(), 8);
const_assert_eq!(size_of::<EvtchnBindUnboundPort>(), 4);
const_assert_eq!(size_of::<EvtchnPortArg>(), 4);
// The copy segment stores pointers in 64-bit fields.
const_assert_eq!(size_of::<usize>(), 8);

/// `GNTALLOC_FLAG_WRITABLE`.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;
/// `UNMAP_NOTIFY_CLEAR_BYTE`.
pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 0x1;
/// `UNMAP_NOTIFY_SEND_EVENT`.
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 0x2;
/// `GNTCOPY_source_gref` (grant_table.h), as a copy-segment flag.
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 2;
/// Offset of `foreign.offset` within a copy-segment union.
pub const COPY_FOREIGN_OFFSET_AT: usize = 4;
/// Offset of `foreign.domid` within a copy-segment union.
pub const COPY_FOREIGN_DOMID_AT: usize = 6;

/// `IOCTL_GNTALLOC_ALLOC_GREF`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 = ioc_none(b'G', 5, size_of::<GntallocAllocGref>());
/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 = ioc_none(b'G', 6, size_of::<GntallocDeallocGref>());
/// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: u32 = ioc_none(b'G', 7, size_of::<UnmapNotify>());
/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc_none(b'G', 0, size_of::<GntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = ioc_none(b'G', 1, size_of::<GntdevUnmapGrantRef>());
/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u32 = ioc_none(b'G', 7, size_of::<UnmapNotify>());
/// `IOCTL_GNTDEV_GRANT_COPY`.
pub const IOCTL_GNTDEV_GRANT_COPY: u32 = ioc_none(b'G', 8, size_of::<GntdevGrantCopy>());
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 =
    ioc_none(b'E', 1, size_of::<EvtchnBindInterdomain>());
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 =
    ioc_none(b'E', 2, size_of::<EvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc_none(b'E', 3, size_of::<EvtchnPortArg>());
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc_none(b'E', 4, size_of::<EvtchnPortArg>());

// The numbers of xen-abi.md section 5.
const_assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
const_assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
const_assert_eq!(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, 0x0010_4707);
const_assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
const_assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
const_assert_eq!(IOCTL_GNTDEV_SET_UNMAP_NOTIFY, 0x0010_4707);
const_assert_eq!(IOCTL_GNTDEV_GRANT_COPY, 0x0010_4708);
const_assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
const_assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x0004_4502);
const_assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
const_assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);

/// The calling thread's `errno`.
fn errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// `ioctl(fd, request, buf)` for a request whose argument the kernel reads and writes only
/// within `buf` (callers size `buf` for the request, see each user).
fn ioctl_bytes(file: &File, request: u32, buf: &mut [u8]) -> Result<i32, Errno> {
    // SAFETY: `buf` is a live, writable, exclusively borrowed buffer for the whole call. Each
    // caller in this module passes a request whose argument, as the Linux driver reads and
    // writes it (copy_from_user/copy_to_user of the header and of `count` tail entries), lies
    // within `buf.len()` bytes: the callers size `buf` from the same `count` they write into
    // it. The only request that makes the kernel follow pointers inside the argument is
    // GRANT_COPY (`grant_copy` below): its one segment and the segment's `virt` buffer are
    // exclusive borrows held by the caller across this call. No other memory is touched.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::c_ulong, buf.as_mut_ptr()) };
    if rc < 0 { Err(errno()) } else { Ok(rc) }
}

/// A request with a fixed-size argument `T`.
fn ioctl_fixed<T: IntoBytes + FromBytes + Immutable>(
    file: &File,
    request: u32,
    arg: &mut T,
) -> Result<i32, Errno> {
    // The request's size field is size_of::<T>() (asserted with the numbers above), and these
    // drivers read and write exactly that struct.
    ioctl_bytes(file, request, arg.as_mut_bytes())
}

/// `IOCTL_GNTALLOC_ALLOC_GREF`: `count` fresh pages granted to `domid`. Returns the `mmap`
/// index and the grant references.
pub fn gntalloc_alloc(
    file: &File,
    domid: u16,
    writable: bool,
    count: u32,
) -> Result<(u64, Vec<u32>), Errno> {
    let n = count as usize;
    // The kernel reads the 24-byte struct and writes it back, then writes `count` refs at
    // offset 16: the buffer covers both.
    let len = size_of::<GntallocAllocGref>().max(16 + 4 * n);
    let mut buf = vec![0u8; len];
    let hdr = GntallocAllocGref {
        domid,
        flags: if writable { GNTALLOC_FLAG_WRITABLE } else { 0 },
        count,
        ..Default::default()
    };
    buf[..size_of::<GntallocAllocGref>()].copy_from_slice(hdr.as_bytes());
    ioctl_bytes(file, IOCTL_GNTALLOC_ALLOC_GREF, &mut buf)?;
    let index = u64::from_ne_bytes(buf[8..16].try_into().expect("8 bytes"));
    let refs = buf[16..16 + 4 * n]
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok((index, refs))
}

/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub fn gntalloc_dealloc(file: &File, index: u64, count: u32) -> Result<(), Errno> {
    let mut arg = GntallocDeallocGref {
        index,
        count,
        _pad: 0,
    };
    ioctl_fixed(file, IOCTL_GNTALLOC_DEALLOC_GREF, &mut arg).map(drop)
}

/// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY` or `IOCTL_GNTDEV_SET_UNMAP_NOTIFY` (`request`).
pub fn set_unmap_notify(
    file: &File,
    request: u32,
    index: u64,
    action: u32,
    port: u32,
) -> Result<(), Errno> {
    debug_assert!(
        request == IOCTL_GNTALLOC_SET_UNMAP_NOTIFY || request == IOCTL_GNTDEV_SET_UNMAP_NOTIFY
    );
    let mut arg = UnmapNotify {
        index,
        action,
        event_channel_port: port,
    };
    ioctl_fixed(file, request, &mut arg).map(drop)
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF` of `(domid, ref)` pairs. Returns the `mmap` index.
pub fn gntdev_map(file: &File, refs: &[(u32, u32)]) -> Result<u64, Errno> {
    let count = u32::try_from(refs.len()).map_err(|_| Errno(libc::E2BIG))?;
    // The kernel reads the 24-byte struct, then `count` 8-byte refs from offset 16.
    let len = size_of::<GntdevMapGrantRef>().max(16 + 8 * refs.len());
    let mut buf = vec![0u8; len];
    buf[..4].copy_from_slice(&count.to_ne_bytes());
    for (i, (domid, r)) in refs.iter().enumerate() {
        let at = 16 + 8 * i;
        let one = GntdevGrantRef {
            domid: *domid,
            ref_: *r,
        };
        buf[at..at + 8].copy_from_slice(one.as_bytes());
    }
    ioctl_bytes(file, IOCTL_GNTDEV_MAP_GRANT_REF, &mut buf)?;
    Ok(u64::from_ne_bytes(buf[8..16].try_into().expect("8 bytes")))
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub fn gntdev_unmap(file: &File, index: u64, count: u32) -> Result<(), Errno> {
    let mut arg = GntdevUnmapGrantRef {
        index,
        count,
        pad: 0,
    };
    ioctl_fixed(file, IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut arg).map(drop)
}

/// A foreign end of a grant copy: `(domid, gref, offset)`.
#[derive(Clone, Copy, Debug)]
pub struct ForeignEnd {
    /// The granting domain.
    pub domid: u16,
    /// Its grant reference.
    pub gref: u32,
    /// Byte offset within the granted page.
    pub offset: u16,
}

/// The 8-byte union value `foreign` of a copy segment.
pub fn copy_ptr(f: ForeignEnd) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&f.gref.to_ne_bytes());
    b[COPY_FOREIGN_OFFSET_AT..COPY_FOREIGN_OFFSET_AT + 2].copy_from_slice(&f.offset.to_ne_bytes());
    b[COPY_FOREIGN_DOMID_AT..COPY_FOREIGN_DOMID_AT + 2].copy_from_slice(&f.domid.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// Runs one copy segment and returns its `GNTST_*` status.
fn grant_copy(file: &File, seg: &mut GntdevGrantCopySegment) -> Result<i16, Errno> {
    let mut arg = GntdevGrantCopy {
        count: 1,
        _pad: 0,
        segments: seg as *mut GntdevGrantCopySegment as u64,
    };
    // Besides `arg`, the kernel reads one segment at `segments` and writes its `status`: `seg`
    // is an exclusively borrowed, live segment (see `ioctl_bytes` for `arg` itself).
    ioctl_fixed(file, IOCTL_GNTDEV_GRANT_COPY, &mut arg)?;
    Ok(seg.status)
}

/// `IOCTL_GNTDEV_GRANT_COPY` from a foreign grant into `dst` (at most a page; the caller
/// checked that `offset + dst.len()` fits the page).
pub fn gntdev_copy_from(file: &File, src: ForeignEnd, dst: &mut [u8]) -> Result<i16, Errno> {
    let len = u16::try_from(dst.len()).map_err(|_| Errno(libc::EINVAL))?;
    // The kernel writes `len` bytes at `dest` (get_user_pages + copy in the driver); `dst` is
    // an exclusively borrowed buffer of exactly that length, alive during the call.
    let mut seg = GntdevGrantCopySegment {
        source: copy_ptr(src),
        dest: dst.as_mut_ptr() as u64,
        len,
        flags: GNTCOPY_SOURCE_GREF,
        ..Default::default()
    };
    grant_copy(file, &mut seg)
}

/// `IOCTL_GNTDEV_GRANT_COPY` from `src` into a foreign grant.
pub fn gntdev_copy_to(file: &File, src: &[u8], dst: ForeignEnd) -> Result<i16, Errno> {
    let len = u16::try_from(src.len()).map_err(|_| Errno(libc::EINVAL))?;
    // The kernel only reads `len` bytes at `source`, a live borrowed buffer of that length.
    let mut seg = GntdevGrantCopySegment {
        source: src.as_ptr() as u64,
        dest: copy_ptr(dst),
        len,
        flags: GNTCOPY_DEST_GREF,
        ..Default::default()
    };
    grant_copy(file, &mut seg)
}

/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: returns the new local port.
pub fn evtchn_bind_unbound(file: &File, remote_domain: u16) -> Result<u32, Errno> {
    let mut arg = EvtchnBindUnboundPort {
        remote_domain: remote_domain.into(),
    };
    ioctl_fixed(file, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &mut arg).map(|p| p as u32)
}

/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: returns the new local port.
pub fn evtchn_bind_interdomain(file: &File, remote_domain: u16, port: u32) -> Result<u32, Errno> {
    let mut arg = EvtchnBindInterdomain {
        remote_domain: remote_domain.into(),
        remote_port: port,
    };
    ioctl_fixed(file, IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut arg).map(|p| p as u32)
}

/// `IOCTL_EVTCHN_UNBIND`.
pub fn evtchn_unbind(file: &File, port: u32) -> Result<(), Errno> {
    ioctl_fixed(file, IOCTL_EVTCHN_UNBIND, &mut EvtchnPortArg { port }).map(drop)
}

/// `IOCTL_EVTCHN_NOTIFY`.
pub fn evtchn_notify(file: &File, port: u32) -> Result<(), Errno> {
    ioctl_fixed(file, IOCTL_EVTCHN_NOTIFY, &mut EvtchnPortArg { port }).map(drop)
}

/// Waits until `file` is readable or `timeout` passes (`None`: forever). True if readable.
pub fn poll_readable(file: &File, timeout: Option<Duration>) -> Result<bool, Errno> {
    let ms = match timeout {
        None => -1,
        // Rounded up: a wait must not end before its deadline.
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one live, exclusively borrowed pollfd and we pass `nfds` = 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => match errno() {
                Errno(libc::EINTR) => continue,
                e => return Err(e),
            },
        }
    }
}

/// A `MAP_SHARED` mapping of a device's pages; unmapped on drop (or by [`Mapping::unmap`]).
///
/// The memory is shared with another domain: it is reached only through [`SharedMem`] views.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; it is only accessed through
// `SharedMem` views (atomics and volatile copies), which may be used from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives out only `SharedMem` views.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, file, offset)`.
    pub fn new(file: &File, len: usize, offset: u64, writable: bool) -> Result<Mapping, Errno> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let off = libc::off_t::try_from(offset).map_err(|_| Errno(libc::EINVAL))?;
        if len == 0 {
            return Err(Errno(libc::EINVAL));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL, no MAP_FIXED), so no
        // existing memory of this process is replaced; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(Errno(libc::EFAULT))?;
        Ok(Mapping { ptr, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A view with access `A`. For a read-only mapping callers must use `ReadOnly`.
    pub fn mem<A: Access>(&self) -> SharedMem<'_, A> {
        // SAFETY: `ptr` is a page-aligned mapping of `len` bytes that stays mapped until
        // `self` is dropped or consumed, which the view's borrow of `self` prevents; this
        // crate never forms a reference into it, only `SharedMem` views. Writable views are
        // only created for mappings made with `writable` (see the callers).
        unsafe { SharedMem::from_raw_parts(self.ptr, self.len) }
    }

    /// Unmaps now, reporting `munmap`'s answer.
    pub fn unmap(self) -> Result<(), Errno> {
        let me = std::mem::ManuallyDrop::new(self);
        me.munmap()
    }

    fn munmap(&self) -> Result<(), Errno> {
        // SAFETY: `ptr`/`len` is exactly the mapping `mmap` returned, owned by this value and
        // unmapped only here (from `unmap`, which forgets `self`, or from `drop`). No views
        // are alive: they borrow `self`.
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if rc < 0 { Err(errno()) } else { Ok(()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Nothing else can be done on failure; the address range stays reserved.
        let _ = self.munmap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_follow_the_ioc_encoding() {
        assert_eq!(ioc_none(b'E', 5, 0), 0x4505);
        assert_eq!(ioc_none(b'E', 6, 2), 0x0002_4506);
    }

    #[test]
    fn foreign_copy_end_is_ref_offset_domid() {
        let v = copy_ptr(ForeignEnd {
            domid: 0x1234,
            gref: 0xAABB_CCDD,
            offset: 0x0FFF,
        });
        let b = v.to_ne_bytes();
        assert_eq!(u32::from_ne_bytes(b[..4].try_into().unwrap()), 0xAABB_CCDD);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 0x0FFF);
        assert_eq!(u16::from_ne_bytes(b[6..8].try_into().unwrap()), 0x1234);
    }

    #[test]
    fn ioctls_on_a_non_xen_file_fail_with_the_kernel_errno() {
        let f = File::open("/dev/null").unwrap();
        assert_eq!(
            gntalloc_alloc(&f, 0, true, 1).unwrap_err(),
            Errno(libc::ENOTTY)
        );
        assert_eq!(evtchn_notify(&f, 1).unwrap_err(), Errno(libc::ENOTTY));
        assert_eq!(gntdev_map(&f, &[(0, 8)]).unwrap_err(), Errno(libc::ENOTTY));
    }

    #[test]
    fn anonymous_style_mapping_of_dev_zero_round_trips() {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/zero")
            .unwrap();
        let m = Mapping::new(&f, 4096, 0, true).unwrap();
        let mem = m.mem::<xen_gnttab::Writable>();
        assert_eq!(mem.len(), 4096);
        mem.write_bytes(10, b"abc");
        let mut out = [0u8; 3];
        mem.read_bytes(10, &mut out);
        assert_eq!(&out, b"abc");
        m.unmap().unwrap();
        assert_eq!(
            Mapping::new(&f, 0, 0, true).unwrap_err(),
            Errno(libc::EINVAL)
        );
    }
}
