//! The grant-table v1 ABI, exactly as Xen 4.17's `public/grant_table.h` and `public/xen.h`.
//!
//! Every size, offset and constant here is asserted at compile time and compared with the real
//! headers by `cargo xtask abi`. The structs are plain wire images (`zerocopy`); they are only
//! ever copied in and out of shared memory through [`crate::shared::SharedMem`].

use bitflags::bitflags;
use core::fmt;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of a Xen page, the unit of granting.
pub const PAGE_SIZE: usize = 4096;
/// `GNTTAB_NR_RESERVED_ENTRIES`: refs 0..8 are reserved (console 0, xenstore 1) and never
/// handed out by an allocator.
pub const NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`.
pub const RESERVED_CONSOLE: u32 = 0;
/// `GNTTAB_RESERVED_XENSTORE`.
pub const RESERVED_XENSTORE: u32 = 1;
/// v1 entries per 4 KiB grant-table frame.
pub const ENTRIES_PER_FRAME_V1: usize = PAGE_SIZE / core::mem::size_of::<GrantEntryV1>();

/// A grant reference (`grant_ref_t`): an index into the granting domain's grant table.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

impl fmt::Debug for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gref#{}", self.0)
    }
}

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A grant handle (`grant_handle_t`) returned by a map and needed to unmap.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(transparent)]
pub struct GrantHandle(pub u32);

/// A domain id (`domid_t`).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(transparent)]
pub struct Domid(pub u16);

impl Domid {
    /// The control domain.
    pub const DOM0: Domid = Domid(0);
    /// `DOMID_FIRST_RESERVED`: ids from here on are not real domains.
    pub const FIRST_RESERVED: Domid = Domid(0x7FF0);
    /// `DOMID_SELF`: the calling domain.
    pub const SELF: Domid = Domid(0x7FF0);
    /// `DOMID_IO`.
    pub const IO: Domid = Domid(0x7FF1);
    /// `DOMID_XEN`.
    pub const XEN: Domid = Domid(0x7FF2);
    /// `DOMID_COW`.
    pub const COW: Domid = Domid(0x7FF3);
    /// `DOMID_INVALID`.
    pub const INVALID: Domid = Domid(0x7FF4);
    /// `DOMID_IDLE`.
    pub const IDLE: Domid = Domid(0x7FFF);

    /// True for ids of real domains (below `DOMID_FIRST_RESERVED`).
    pub const fn is_real(self) -> bool {
        self.0 < Self::FIRST_RESERVED.0
    }
}

impl fmt::Debug for Domid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

impl fmt::Display for Domid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// A guest frame number as the platform knows it (the `frame` of a grant entry).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct Frame(pub u64);

bitflags! {
    /// The `flags` word of a v1 grant entry (`GTF_*`).
    ///
    /// The low two bits are a type, not flags: use [`GtfFlags::grant_type`] to read them.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub struct GtfFlags: u16 {
        /// `GTF_permit_access` (type 1).
        const PERMIT_ACCESS = 1;
        /// `GTF_accept_transfer` (type 2).
        const ACCEPT_TRANSFER = 2;
        /// `GTF_transitive` (type 3, v2 only).
        const TRANSITIVE = 3;
        /// `GTF_readonly`: the peer may only map or copy from the page.
        const READONLY = 1 << 2;
        /// `GTF_reading`: set by Xen while the peer has the page pinned.
        const READING = 1 << 3;
        /// `GTF_writing`: set by Xen while the peer has the page pinned writable.
        const WRITING = 1 << 4;
        /// `GTF_PWT`.
        const PWT = 1 << 5;
        /// `GTF_PCD`.
        const PCD = 1 << 6;
        /// `GTF_PAT`.
        const PAT = 1 << 7;
        /// `GTF_sub_page` (v2, copy only).
        const SUB_PAGE = 1 << 8;
    }
}

/// `GTF_invalid`.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive`.
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page`.
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_transfer_committed`.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// `GTF_transfer_completed`.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

impl GtfFlags {
    /// The entry type (`flags & GTF_type_mask`).
    pub const fn grant_type(self) -> u16 {
        self.bits() & GTF_TYPE_MASK
    }
}

/// `struct grant_entry_v1`: one entry of a v1 grant table (8 bytes).
///
/// The guest writes `domid` and `frame`, then (after a write barrier) `flags`. Xen sets
/// `GTF_reading`/`GTF_writing` in `flags` with a 32-bit compare-and-swap over `flags` and
/// `domid` together. Never construct a reference to a live entry: go through the accessor.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain allowed to map or copy the frame.
    pub domid: u16,
    /// The granted guest frame number.
    pub frame: u32,
}

/// Byte offset of `flags` within a v1 entry.
pub const ENTRY_V1_FLAGS_OFFSET: usize = core::mem::offset_of!(GrantEntryV1, flags);
/// Byte offset of `domid` within a v1 entry.
pub const ENTRY_V1_DOMID_OFFSET: usize = core::mem::offset_of!(GrantEntryV1, domid);
/// Byte offset of `frame` within a v1 entry.
pub const ENTRY_V1_FRAME_OFFSET: usize = core::mem::offset_of!(GrantEntryV1, frame);

/// `GNTTABOP_*` hypercall sub-operations.
pub mod op {
    /// `GNTTABOP_map_grant_ref`.
    pub const MAP_GRANT_REF: u32 = 0;
    /// `GNTTABOP_unmap_grant_ref`.
    pub const UNMAP_GRANT_REF: u32 = 1;
    /// `GNTTABOP_setup_table`.
    pub const SETUP_TABLE: u32 = 2;
    /// `GNTTABOP_dump_table`.
    pub const DUMP_TABLE: u32 = 3;
    /// `GNTTABOP_transfer`.
    pub const TRANSFER: u32 = 4;
    /// `GNTTABOP_copy`.
    pub const COPY: u32 = 5;
    /// `GNTTABOP_query_size`.
    pub const QUERY_SIZE: u32 = 6;
    /// `GNTTABOP_unmap_and_replace`.
    pub const UNMAP_AND_REPLACE: u32 = 7;
    /// `GNTTABOP_set_version`.
    pub const SET_VERSION: u32 = 8;
    /// `GNTTABOP_get_status_frames`.
    pub const GET_STATUS_FRAMES: u32 = 9;
    /// `GNTTABOP_get_version`.
    pub const GET_VERSION: u32 = 10;
    /// `GNTTABOP_swap_grant_ref`.
    pub const SWAP_GRANT_REF: u32 = 11;
    /// `GNTTABOP_cache_flush`.
    pub const CACHE_FLUSH: u32 = 12;
}

/// `GNTMAP_device_map`.
pub const GNTMAP_DEVICE_MAP: u32 = 1;
/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 2;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 4;
/// `GNTMAP_application_map`.
pub const GNTMAP_APPLICATION_MAP: u32 = 8;
/// `GNTMAP_contains_pte`.
pub const GNTMAP_CONTAINS_PTE: u32 = 16;
/// `GNTCOPY_source_gref`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 2;

/// `struct gnttab_map_grant_ref` (32 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// IN: where to map.
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the grant reference.
    pub ref_: u32,
    /// IN: the granting domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for the unmap.
    pub handle: u32,
    /// OUT: bus address for device maps.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (24 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    /// IN: the mapped address.
    pub host_addr: u64,
    /// IN: the device address.
    pub dev_bus_addr: u64,
    /// IN: the handle from the map.
    pub handle: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Tail padding of the C struct.
    pub _pad: u16,
}

/// One side of a `gnttab_copy`: `u` is a grant ref (with `GNTCOPY_*_gref`) or a local frame.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// `u.ref` or `u.gmfn` (a 64-bit union).
    pub u: u64,
    /// The domain owning the page.
    pub domid: u16,
    /// Byte offset within the page.
    pub offset: u16,
    /// Tail padding of the C struct.
    pub _pad: u32,
}

/// `struct gnttab_copy` (40 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopy {
    /// IN: source.
    pub source: GnttabCopyPtr,
    /// IN: destination.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Tail padding of the C struct.
    pub _pad: u16,
}

assert_eq_size!(GrantRef, u32);
assert_eq_size!(GrantHandle, u32);
assert_eq_size!(Domid, u16);
const_assert_eq!(core::mem::size_of::<GrantEntryV1>(), 8);
const_assert_eq!(core::mem::align_of::<GrantEntryV1>(), 4);
const_assert_eq!(ENTRY_V1_FLAGS_OFFSET, 0);
const_assert_eq!(ENTRY_V1_DOMID_OFFSET, 2);
const_assert_eq!(ENTRY_V1_FRAME_OFFSET, 4);
const_assert_eq!(ENTRIES_PER_FRAME_V1, 512);
const_assert_eq!(core::mem::size_of::<GnttabMapGrantRef>(), 32);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, flags), 8);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, ref_), 12);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, dom), 16);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, status), 18);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, handle), 20);
const_assert_eq!(core::mem::offset_of!(GnttabMapGrantRef, dev_bus_addr), 24);
const_assert_eq!(core::mem::size_of::<GnttabUnmapGrantRef>(), 24);
const_assert_eq!(core::mem::offset_of!(GnttabUnmapGrantRef, dev_bus_addr), 8);
const_assert_eq!(core::mem::offset_of!(GnttabUnmapGrantRef, handle), 16);
const_assert_eq!(core::mem::offset_of!(GnttabUnmapGrantRef, status), 20);
const_assert_eq!(core::mem::size_of::<GnttabCopy>(), 40);
const_assert_eq!(core::mem::offset_of!(GnttabCopy, source), 0);
const_assert_eq!(core::mem::offset_of!(GnttabCopyPtr, domid), 8);
const_assert_eq!(core::mem::offset_of!(GnttabCopyPtr, offset), 10);
const_assert_eq!(core::mem::offset_of!(GnttabCopy, dest), 16);
const_assert_eq!(core::mem::offset_of!(GnttabCopy, len), 32);
const_assert_eq!(core::mem::offset_of!(GnttabCopy, flags), 34);
const_assert_eq!(core::mem::offset_of!(GnttabCopy, status), 36);

/// A `GNTST_*` failure status, as a typed error.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
#[repr(i16)]
pub enum GntStatus {
    /// `GNTST_general_error` (-1).
    #[error("general error (GNTST_general_error)")]
    GeneralError = -1,
    /// `GNTST_bad_domain` (-2).
    #[error("unrecognised domain id (GNTST_bad_domain)")]
    BadDomain = -2,
    /// `GNTST_bad_gntref` (-3).
    #[error("unrecognised or inappropriate grant ref (GNTST_bad_gntref)")]
    BadGntref = -3,
    /// `GNTST_bad_handle` (-4).
    #[error("unrecognised or inappropriate handle (GNTST_bad_handle)")]
    BadHandle = -4,
    /// `GNTST_bad_virt_addr` (-5).
    #[error("inappropriate virtual address to map (GNTST_bad_virt_addr)")]
    BadVirtAddr = -5,
    /// `GNTST_bad_dev_addr` (-6).
    #[error("inappropriate device address to unmap (GNTST_bad_dev_addr)")]
    BadDevAddr = -6,
    /// `GNTST_no_device_space` (-7).
    #[error("out of space in I/O MMU (GNTST_no_device_space)")]
    NoDeviceSpace = -7,
    /// `GNTST_permission_denied` (-8).
    #[error("not enough privilege for operation (GNTST_permission_denied)")]
    PermissionDenied = -8,
    /// `GNTST_bad_page` (-9).
    #[error("specified page was invalid for op (GNTST_bad_page)")]
    BadPage = -9,
    /// `GNTST_bad_copy_arg` (-10).
    #[error("copy arguments cross page boundary (GNTST_bad_copy_arg)")]
    BadCopyArg = -10,
    /// `GNTST_address_too_big` (-11).
    #[error("transfer page address too large (GNTST_address_too_big)")]
    AddressTooBig = -11,
    /// `GNTST_eagain` (-12).
    #[error("operation not done; try again (GNTST_eagain)")]
    Eagain = -12,
    /// `GNTST_no_space` (-13).
    #[error("out of space (GNTST_no_space)")]
    NoSpace = -13,
}

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;

impl GntStatus {
    /// Every failure status, in order of value.
    pub const ALL: [GntStatus; 13] = [
        GntStatus::GeneralError,
        GntStatus::BadDomain,
        GntStatus::BadGntref,
        GntStatus::BadHandle,
        GntStatus::BadVirtAddr,
        GntStatus::BadDevAddr,
        GntStatus::NoDeviceSpace,
        GntStatus::PermissionDenied,
        GntStatus::BadPage,
        GntStatus::BadCopyArg,
        GntStatus::AddressTooBig,
        GntStatus::Eagain,
        GntStatus::NoSpace,
    ];

    /// The raw `GNTST_*` value.
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// Interprets a raw status: `Ok(())` for `GNTST_okay`, the typed error for a known failure,
    /// and `Err(None)` for a value Xen does not define.
    pub fn from_code(code: i16) -> Result<(), Option<GntStatus>> {
        if code == GNTST_OKAY {
            return Ok(());
        }
        Err(Self::ALL.iter().copied().find(|s| s.code() == code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        assert_eq!(GntStatus::from_code(0), Ok(()));
        for (i, s) in GntStatus::ALL.iter().enumerate() {
            assert_eq!(s.code(), -(i as i16) - 1);
            assert_eq!(GntStatus::from_code(s.code()), Err(Some(*s)));
        }
        assert_eq!(GntStatus::from_code(-14), Err(None));
        assert_eq!(GntStatus::from_code(5), Err(None));
    }

    #[test]
    fn flags_type_is_the_low_two_bits() {
        let f = GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY | GtfFlags::READING;
        assert_eq!(f.grant_type(), GTF_PERMIT_ACCESS);
        assert_eq!(f.bits(), 0x0d);
        assert!(Domid(5).is_real());
        assert!(!Domid::SELF.is_real());
    }
}
