//! The wire ABI of `xen/include/public/io/libxenvchan.h`, and libxenvchan's layout rules.
//!
//! The shared page starts with the 24-byte [`VchanInterface`] header: two [`RingShared`]
//! index pairs (`left` carries client → server bytes, `right` server → client), the two ring
//! orders, the live bytes and the notify bytes. A ring of order 10 lives inside the shared
//! page at offset 1024, order 11 at 2048; orders 12 to 20 use `2^(order-12)` separately
//! granted pages whose references follow the header, left ring first. Every size and offset
//! is asserted below and compared with the real header by `cargo xtask abi`.

use static_assertions::const_assert_eq;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct ring_shared`: one ring's consumer and producer indices (free-running `u32`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RingShared {
    /// Bytes consumed so far (written by the reader).
    pub cons: u32,
    /// Bytes produced so far (written by the writer).
    pub prod: u32,
}

/// `struct vchan_interface` without its flexible `grants[]` tail.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VchanInterface {
    /// Client → server ring indices.
    pub left: RingShared,
    /// Server → client ring indices.
    pub right: RingShared,
    /// Order (log2 of the size in bytes) of the left ring.
    pub left_order: u16,
    /// Order of the right ring.
    pub right_order: u16,
    /// The client's live byte ([`LIVE_CLOSED`], [`LIVE_CONNECTED`], [`LIVE_WAITING`]).
    pub cli_live: u8,
    /// The server's live byte.
    pub srv_live: u8,
    /// Notifications the server asked of the client ([`NOTIFY_WRITE`], [`NOTIFY_READ`]).
    pub cli_notify: u8,
    /// Notifications the client asked of the server.
    pub srv_notify: u8,
}

/// Size of the header; the grant list starts here.
pub const HEADER_SIZE: usize = 24;
/// Offset of `left.cons`.
pub const LEFT_CONS: usize = 0;
/// Offset of `left.prod`.
pub const LEFT_PROD: usize = 4;
/// Offset of `right.cons`.
pub const RIGHT_CONS: usize = 8;
/// Offset of `right.prod`.
pub const RIGHT_PROD: usize = 12;
/// Offset of `left_order`.
pub const LEFT_ORDER: usize = 16;
/// Offset of `right_order`.
pub const RIGHT_ORDER: usize = 18;
/// Offset of `cli_live`.
pub const CLI_LIVE: usize = 20;
/// Offset of `srv_live`.
pub const SRV_LIVE: usize = 21;
/// Offset of `cli_notify`.
pub const CLI_NOTIFY: usize = 22;
/// Offset of `srv_notify`.
pub const SRV_NOTIFY: usize = 23;
/// Offset of `grants[]`.
pub const GRANTS: usize = 24;

const_assert_eq!(core::mem::size_of::<RingShared>(), 8);
const_assert_eq!(core::mem::size_of::<VchanInterface>(), HEADER_SIZE);
const_assert_eq!(core::mem::offset_of!(VchanInterface, left), LEFT_CONS);
const_assert_eq!(core::mem::offset_of!(VchanInterface, left) + 4, LEFT_PROD);
const_assert_eq!(core::mem::offset_of!(VchanInterface, right), RIGHT_CONS);
const_assert_eq!(core::mem::offset_of!(VchanInterface, right) + 4, RIGHT_PROD);
const_assert_eq!(core::mem::offset_of!(RingShared, cons), 0);
const_assert_eq!(core::mem::offset_of!(RingShared, prod), 4);
const_assert_eq!(
    core::mem::offset_of!(VchanInterface, left_order),
    LEFT_ORDER
);
const_assert_eq!(
    core::mem::offset_of!(VchanInterface, right_order),
    RIGHT_ORDER
);
const_assert_eq!(core::mem::offset_of!(VchanInterface, cli_live), CLI_LIVE);
const_assert_eq!(core::mem::offset_of!(VchanInterface, srv_live), SRV_LIVE);
const_assert_eq!(
    core::mem::offset_of!(VchanInterface, cli_notify),
    CLI_NOTIFY
);
const_assert_eq!(
    core::mem::offset_of!(VchanInterface, srv_notify),
    SRV_NOTIFY
);

/// `VCHAN_NOTIFY_WRITE`: notify when data is written.
pub const NOTIFY_WRITE: u8 = 1;
/// `VCHAN_NOTIFY_READ`: notify when data is read (space freed).
pub const NOTIFY_READ: u8 = 2;

/// Live byte: this side has exited (or never was).
pub const LIVE_CLOSED: u8 = 0;
/// Live byte: this side is connected.
pub const LIVE_CONNECTED: u8 = 1;
/// Live byte (`cli_live` only): the client has not connected yet.
pub const LIVE_WAITING: u8 = 2;

/// The page size of the grants.
pub const PAGE_SIZE: usize = xen_gnttab::PAGE_SIZE;
/// `PAGE_SHIFT`: rings of this order or more use separate pages.
pub const PAGE_ORDER: u16 = 12;
/// `SMALL_RING_SHIFT`: the order of the ring at [`SMALL_RING_OFFSET`].
pub const SMALL_RING_ORDER: u16 = 10;
/// `LARGE_RING_SHIFT`: the order of the ring at [`LARGE_RING_OFFSET`].
pub const LARGE_RING_ORDER: u16 = 11;
/// Where an order-10 ring sits in the shared page.
pub const SMALL_RING_OFFSET: usize = 1024;
/// Where an order-11 ring sits in the shared page.
pub const LARGE_RING_OFFSET: usize = 2048;
/// `MAX_RING_SHIFT`: the largest order (1 MiB).
pub const MAX_RING_ORDER: u16 = 20;
/// The smallest order.
pub const MIN_RING_ORDER: u16 = SMALL_RING_ORDER;
/// The largest ring, in bytes.
pub const MAX_RING_SIZE: usize = 1 << MAX_RING_ORDER;

const_assert_eq!(1 << SMALL_RING_ORDER, SMALL_RING_OFFSET);
const_assert_eq!(1 << LARGE_RING_ORDER, LARGE_RING_OFFSET);
const_assert_eq!(1 << PAGE_ORDER, PAGE_SIZE);
// The two in-page rings fit in the page, after the header.
const_assert_eq!(LARGE_RING_OFFSET + (1 << LARGE_RING_ORDER), PAGE_SIZE);

/// Where one ring's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Inside the shared page, at this offset.
    InPage(usize),
    /// In `count` separately granted pages whose refs are `grants[first..first + count]`.
    Pages {
        /// Index of the first ref in the grant list.
        first: usize,
        /// Number of pages.
        count: usize,
    },
}

/// One ring's geometry, fixed at connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// log2 of the size in bytes.
    pub order: u16,
    /// Where it is.
    pub place: Place,
}

impl RingGeometry {
    /// The size in bytes.
    pub const fn size(&self) -> usize {
        1 << self.order
    }

    /// Bytes per chunk: the whole ring when in the page, else one page.
    pub const fn chunk(&self) -> usize {
        match self.place {
            Place::InPage(_) => self.size(),
            Place::Pages { .. } => PAGE_SIZE,
        }
    }

    /// The offset of the ring in the shared page, if it is there.
    pub const fn in_page(&self) -> Option<usize> {
        match self.place {
            Place::InPage(off) => Some(off),
            Place::Pages { .. } => None,
        }
    }

    /// Separately granted pages.
    pub const fn pages(&self) -> usize {
        match self.place {
            Place::InPage(_) => 0,
            Place::Pages { count, .. } => count,
        }
    }
}

/// Why a pair of orders cannot describe a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// An order outside 10..=20.
    #[error("ring order {0} is outside {MIN_RING_ORDER}..={MAX_RING_ORDER}")]
    OrderOutOfRange(u16),
    /// Both rings would sit at the same place in the shared page.
    #[error("both rings have the in-page order {0}")]
    SameInPageOrder(u16),
    /// The grant list would run into an in-page ring (or past the page).
    #[error("a grant list of {grants} refs ends at byte {end}, past {limit}")]
    GrantsOverlap {
        /// Refs in the list.
        grants: usize,
        /// Where the list would end.
        end: usize,
        /// Where the first in-page ring (or the page) begins.
        limit: usize,
    },
    /// A requested size above 1 MiB.
    #[error("a ring of {0} bytes is larger than the maximum {MAX_RING_SIZE}")]
    TooLarge(usize),
}

/// Both rings of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Client → server.
    pub left: RingGeometry,
    /// Server → client.
    pub right: RingGeometry,
}

fn in_page_offset(order: u16) -> Option<usize> {
    match order {
        SMALL_RING_ORDER => Some(SMALL_RING_OFFSET),
        LARGE_RING_ORDER => Some(LARGE_RING_OFFSET),
        _ => None,
    }
}

impl Layout {
    /// Validates a pair of orders the way libxenvchan's client does, and more strictly: the
    /// grant list (`24 + 4 * refs` bytes) must end before any in-page ring.
    pub fn from_orders(left_order: u16, right_order: u16) -> Result<Layout, LayoutError> {
        for o in [left_order, right_order] {
            if !(MIN_RING_ORDER..=MAX_RING_ORDER).contains(&o) {
                return Err(LayoutError::OrderOutOfRange(o));
            }
        }
        if left_order == right_order && left_order < PAGE_ORDER {
            return Err(LayoutError::SameInPageOrder(left_order));
        }
        let mut next = 0;
        let mut geometry = |order: u16| {
            let place = match in_page_offset(order) {
                Some(off) => Place::InPage(off),
                None => {
                    let count = 1usize << (order - PAGE_ORDER);
                    let first = next;
                    next += count;
                    Place::Pages { first, count }
                }
            };
            RingGeometry { order, place }
        };
        let left = geometry(left_order);
        let right = geometry(right_order);
        let grants = next;
        let end = GRANTS + 4 * grants;
        let limit = [left, right]
            .iter()
            .filter_map(RingGeometry::in_page)
            .min()
            .unwrap_or(PAGE_SIZE);
        if end > limit {
            return Err(LayoutError::GrantsOverlap { grants, end, limit });
        }
        Ok(Layout { left, right })
    }

    /// The orders libxenvchan's server picks for at least `left_min` bytes client → server
    /// and `right_min` bytes server → client: the in-page pair 10/11 (or 11/10) when both
    /// fit, an in-page order 11 for one side when it fits, else the smallest page order.
    pub fn for_sizes(left_min: usize, right_min: usize) -> Result<Layout, LayoutError> {
        for s in [left_min, right_min] {
            if s > MAX_RING_SIZE {
                return Err(LayoutError::TooLarge(s));
            }
        }
        let min_order = |size: usize| {
            let mut o = PAGE_ORDER;
            while size > 1 << o {
                o += 1;
            }
            o
        };
        let small = 1 << SMALL_RING_ORDER;
        let large = 1 << LARGE_RING_ORDER;
        let (mut l, mut r) = (min_order(left_min), min_order(right_min));
        if left_min <= small && right_min <= large {
            (l, r) = (SMALL_RING_ORDER, LARGE_RING_ORDER);
        } else if left_min <= large && right_min <= small {
            (l, r) = (LARGE_RING_ORDER, SMALL_RING_ORDER);
        } else if left_min <= large {
            l = LARGE_RING_ORDER;
        } else if right_min <= large {
            r = LARGE_RING_ORDER;
        }
        Self::from_orders(l, r)
    }

    /// Refs in the grant list.
    pub fn grant_count(&self) -> usize {
        self.left.pages() + self.right.pages()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_like_libxenvchan() {
        let orders = |l, r| {
            let x = Layout::for_sizes(l, r).unwrap();
            (x.left.order, x.right.order)
        };
        assert_eq!(orders(0, 0), (10, 11));
        assert_eq!(orders(1024, 2048), (10, 11));
        assert_eq!(orders(2048, 1024), (11, 10));
        assert_eq!(orders(2048, 2048), (11, 12));
        assert_eq!(orders(1025, 4097), (11, 13));
        assert_eq!(orders(5000, 2000), (13, 11));
        assert_eq!(orders(65536, 65537), (16, 17));
        assert_eq!(orders(1 << 20, 1 << 20), (20, 20));
        assert_eq!(
            Layout::for_sizes((1 << 20) + 1, 0),
            Err(LayoutError::TooLarge((1 << 20) + 1))
        );
    }

    #[test]
    fn orders_are_validated_and_grants_must_not_overlap() {
        assert_eq!(
            Layout::from_orders(9, 12),
            Err(LayoutError::OrderOutOfRange(9))
        );
        assert_eq!(
            Layout::from_orders(12, 21),
            Err(LayoutError::OrderOutOfRange(21))
        );
        assert_eq!(
            Layout::from_orders(0, 0),
            Err(LayoutError::OrderOutOfRange(0))
        );
        assert_eq!(
            Layout::from_orders(10, 10),
            Err(LayoutError::SameInPageOrder(10))
        );
        assert_eq!(
            Layout::from_orders(11, 11),
            Err(LayoutError::SameInPageOrder(11))
        );
        // 256 refs (1048 bytes of list) run into the ring at 1024.
        assert_eq!(
            Layout::from_orders(10, 20),
            Err(LayoutError::GrantsOverlap {
                grants: 256,
                end: 1048,
                limit: 1024
            })
        );
        assert!(Layout::from_orders(20, 10).is_err());
        let l = Layout::from_orders(11, 20).unwrap();
        assert_eq!(l.left.place, Place::InPage(2048));
        assert_eq!(
            l.right.place,
            Place::Pages {
                first: 0,
                count: 256
            }
        );
        let l = Layout::from_orders(13, 12).unwrap();
        assert_eq!(l.left.place, Place::Pages { first: 0, count: 2 });
        assert_eq!(l.right.place, Place::Pages { first: 2, count: 1 });
        assert_eq!(Layout::from_orders(20, 20).unwrap().grant_count(), 512);
        let mut ok = 0;
        for a in 10..=20 {
            for b in 10..=20 {
                ok += usize::from(Layout::from_orders(a, b).is_ok());
            }
        }
        // 121 pairs, minus 10/10 and 11/11, minus 10/20 and 20/10.
        assert_eq!(ok, 117);
    }
}
