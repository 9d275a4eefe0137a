//! The wire ABI of Xen's `io/ring.h` (Xen 4.17): the shared-ring header, where entries start,
//! the initial values and the size rule.
//!
//! ```text
//! offset  0  req_prod    written by the frontend (producer index of requests)
//! offset  4  req_event   written by the backend  (notify me when req_prod passes this)
//! offset  8  rsp_prod    written by the backend  (producer index of responses)
//! offset 12  rsp_event   written by the frontend (notify me when rsp_prod passes this)
//! offset 16  pvt[4], __pad[44]
//! offset 64  ring[]      entries: a union of one request and one response each
//! ```
//!
//! Consumer indices (`req_cons`, `rsp_cons`) and the private producer indices are never
//! shared; they live in [`crate::FrontRing`] and [`crate::BackRing`].

use static_assertions::const_assert_eq;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of a Xen page, the unit of ring memory.
pub const PAGE_SIZE: usize = 4096;
/// Offset of `req_prod` in the header.
pub const REQ_PROD: usize = 0;
/// Offset of `req_event` in the header.
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod` in the header.
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event` in the header.
pub const RSP_EVENT: usize = 12;
/// Offset of the private `pvt` union (`netif.smartpoll_active`, `tapif_user.msg`).
pub const PVT: usize = 16;
/// Size of the header; the entry array `ring[]` starts here.
pub const HEADER_SIZE: usize = 64;
/// The most pages a ring may span (Linux's `XENBUS_MAX_RING_GRANT_ORDER` = 4).
pub const MAX_RING_PAGES: usize = 16;

/// The `struct X_sring` header as it sits in shared memory.
///
/// Only for layout checks: the ring never forms this struct over shared memory; it reads and
/// writes the four indices with atomics at the offsets above.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SringHeader {
    /// Request producer (frontend).
    pub req_prod: u32,
    /// Request event threshold (backend).
    pub req_event: u32,
    /// Response producer (backend).
    pub rsp_prod: u32,
    /// Response event threshold (frontend).
    pub rsp_event: u32,
    /// The `pvt` union (4 bytes).
    pub pvt: [u8; 4],
    /// `__pad[44]`.
    pub pad: [u8; 44],
}

const_assert_eq!(core::mem::size_of::<SringHeader>(), HEADER_SIZE);
const_assert_eq!(core::mem::offset_of!(SringHeader, req_prod), REQ_PROD);
const_assert_eq!(core::mem::offset_of!(SringHeader, req_event), REQ_EVENT);
const_assert_eq!(core::mem::offset_of!(SringHeader, rsp_prod), RSP_PROD);
const_assert_eq!(core::mem::offset_of!(SringHeader, rsp_event), RSP_EVENT);
const_assert_eq!(core::mem::offset_of!(SringHeader, pvt), PVT);
const_assert_eq!(core::mem::offset_of!(SringHeader, pad), 20);

impl SringHeader {
    /// The header `SHARED_RING_INIT` writes, with every index starting at `start` (0 in
    /// `ring.h`): producers at `start`, event thresholds at `start + 1`, pads zeroed.
    pub const fn initial(start: u32) -> Self {
        SringHeader {
            req_prod: start,
            req_event: start.wrapping_add(1),
            rsp_prod: start,
            rsp_event: start.wrapping_add(1),
            pvt: [0; 4],
            pad: [0; 44],
        }
    }
}

/// `__RING_SIZE`: the number of entries of `entry_size` bytes a ring of `bytes` bytes holds,
/// the largest power of two not above `(bytes - 64) / entry_size`; 0 if not even one fits.
pub const fn ring_size(bytes: usize, entry_size: usize) -> u32 {
    if entry_size == 0 || bytes < HEADER_SIZE {
        return 0;
    }
    let raw = (bytes - HEADER_SIZE) / entry_size;
    if raw == 0 {
        return 0;
    }
    // `__RD32`: round down to a power of two. `raw` < 2^32 for any memory a ring can have.
    let raw = if raw > u32::MAX as usize {
        u32::MAX
    } else {
        raw as u32
    };
    1 << (31 - raw.leading_zeros())
}

/// The ring size for a ring of `pages` pages (1 to [`MAX_RING_PAGES`]), or `None` outside that
/// range or if no entry fits.
pub const fn ring_size_pages(pages: usize, entry_size: usize) -> Option<u32> {
    if pages == 0 || pages > MAX_RING_PAGES {
        return None;
    }
    match ring_size(pages * PAGE_SIZE, entry_size) {
        0 => None,
        n => Some(n),
    }
}

/// The byte offset of entry `index` (already masked) in a ring of `entry_size`-byte entries.
#[inline]
pub const fn entry_offset(index: u32, entry_size: usize) -> usize {
    HEADER_SIZE + index as usize * entry_size
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xen-abi.md section 2: raw counts and `RING_SIZE` for 4 KiB rings and blkif orders.
    #[test]
    fn sizes_match_xen_abi_table() {
        // (pages, entry size, raw count, RING_SIZE)
        let table: &[(usize, usize, usize, u32)] = &[
            (1, 12, 336, 256), // netif_tx (request 12 bytes, response 4)
            (1, 8, 504, 256),  // netif_rx
            (1, 16, 252, 128), // netif ctrl
            (1, 112, 36, 32),  // blkif order 0
            (2, 112, 72, 64),  // order 1
            (4, 112, 145, 128),
            (8, 112, 292, 256),
            (16, 112, 584, 512),
        ];
        for &(pages, entry, raw, size) in table {
            assert_eq!(
                (pages * PAGE_SIZE - HEADER_SIZE) / entry,
                raw,
                "{pages}x{entry}"
            );
            assert_eq!(ring_size(pages * PAGE_SIZE, entry), size, "{pages}x{entry}");
            assert_eq!(ring_size_pages(pages, entry), Some(size));
        }
    }

    #[test]
    fn size_rule_is_largest_power_of_two_that_fits() {
        for pages in 1..=MAX_RING_PAGES {
            for entry in [1, 4, 8, 12, 16, 24, 64, 100, 112, 4000] {
                let n = ring_size_pages(pages, entry).unwrap();
                assert!(n.is_power_of_two());
                let bytes = pages * PAGE_SIZE;
                assert!(HEADER_SIZE + n as usize * entry <= bytes);
                assert!(
                    HEADER_SIZE + 2 * n as usize * entry > bytes,
                    "{pages} {entry}"
                );
            }
        }
        assert_eq!(ring_size_pages(0, 12), None);
        assert_eq!(ring_size_pages(17, 12), None);
        assert_eq!(ring_size_pages(1, 4033), None);
        assert_eq!(ring_size(63, 1), 0);
        assert_eq!(ring_size(64 + 3 * 4, 4), 2);
        assert_eq!(ring_size(4096, 0), 0);
    }

    #[test]
    fn initial_header_is_shared_ring_init() {
        let h = SringHeader::initial(0);
        assert_eq!(
            (h.req_prod, h.req_event, h.rsp_prod, h.rsp_event),
            (0, 1, 0, 1)
        );
        let h = SringHeader::initial(u32::MAX);
        assert_eq!((h.req_prod, h.req_event), (u32::MAX, 0));
        assert!(h.pad.iter().all(|&b| b == 0));
        assert_eq!(entry_offset(3, 12), 100);
    }
}
