//! Test protocols with the wire sizes of the real ones (netif tx, blkif) and a tiny one for
//! loom models.
#![allow(dead_code)]

use xen_ring::Protocol;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// netif tx request: 12 bytes, `id` u16 at 8.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct TxReq {
    pub gref: u32,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    pub size: u16,
}

/// netif tx response: 4 bytes (the slot stays 12).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct TxRsp {
    pub id: u16,
    pub status: i16,
}

/// netif tx: u16 IDs.
pub enum NetTx {}
impl Protocol for NetTx {
    type Request = TxReq;
    type Response = TxRsp;
    type Id = u16;
    fn set_request_id(r: &mut TxReq, id: u16) {
        r.id = id
    }
    fn request_id(r: &TxReq) -> u16 {
        r.id
    }
    fn set_response_id(r: &mut TxRsp, id: u16) {
        r.id = id
    }
    fn response_id(r: &TxRsp) -> u16 {
        r.id
    }
}

/// blkif request: 112 bytes, `id` u64 at 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct BlkReq {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: u16,
    pub pad: u32,
    pub id: u64,
    pub sector: u64,
    pub seg: [u64; 11],
}

impl Default for BlkReq {
    fn default() -> Self {
        zerocopy::FromZeros::new_zeroed()
    }
}

/// blkif response: 16 bytes, `id` u64 at 0.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct BlkRsp {
    pub id: u64,
    pub operation: u8,
    pub pad: u8,
    pub status: i16,
    pub pad2: u32,
}

/// blkif: u64 IDs.
pub enum Blk {}
impl Protocol for Blk {
    type Request = BlkReq;
    type Response = BlkRsp;
    type Id = u64;
    fn set_request_id(r: &mut BlkReq, id: u64) {
        r.id = id
    }
    fn request_id(r: &BlkReq) -> u64 {
        r.id
    }
    fn set_response_id(r: &mut BlkRsp, id: u64) {
        r.id = id
    }
    fn response_id(r: &BlkRsp) -> u64 {
        r.id
    }
}

const _: () = assert!(core::mem::size_of::<TxReq>() == 12);
const _: () = assert!(core::mem::size_of::<BlkReq>() == 112);
const _: () = assert!(core::mem::size_of::<BlkRsp>() == 16);

/// A 4-byte entry for small rings: `id` u16 and a payload u16.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct Small {
    pub id: u16,
    pub val: u16,
}

/// A protocol with 4-byte entries, for loom models and small rings.
pub enum Tiny {}
impl Protocol for Tiny {
    type Request = Small;
    type Response = Small;
    type Id = u16;
    fn set_request_id(r: &mut Small, id: u16) {
        r.id = id
    }
    fn request_id(r: &Small) -> u16 {
        r.id
    }
    fn set_response_id(r: &mut Small, id: u16) {
        r.id = id
    }
    fn response_id(r: &Small) -> u16 {
        r.id
    }
}

/// Bytes for a ring of `n` Tiny entries.
pub const fn tiny_bytes(n: usize) -> usize {
    xen_ring::abi::HEADER_SIZE + 4 * n
}
