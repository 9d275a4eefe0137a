//! What a ring carries: a [`Protocol`] names the request and response wire types and where
//! each carries its request ID.
//!
//! netif, blkif and the others plug in by implementing [`Protocol`] in their own crates; the
//! ring never looks at anything but the ID.

use zerocopy::{FromBytes, Immutable, IntoBytes};

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// The integer type a protocol carries its request IDs in: `u16` for netif, `u64` for blkif.
///
/// Sealed: implemented for `u16`, `u32` and `u64`.
pub trait IdWidth: sealed::Sealed + Copy + Eq + core::fmt::Debug + Send + Sync + 'static {
    /// The widest ID this type can carry, as a `u64`.
    const MAX: u64;
    /// The ID for slot `index` of the in-flight table (always `< ring size`, which the ring
    /// checks fits this type when it is built).
    fn from_index(index: u32) -> Self;
    /// The ID as a `u64`, for range checks and messages.
    fn to_u64(self) -> u64;
}

impl IdWidth for u16 {
    const MAX: u64 = u16::MAX as u64;
    #[inline]
    fn from_index(index: u32) -> Self {
        index as u16
    }
    #[inline]
    fn to_u64(self) -> u64 {
        self.into()
    }
}

impl IdWidth for u32 {
    const MAX: u64 = u32::MAX as u64;
    #[inline]
    fn from_index(index: u32) -> Self {
        index
    }
    #[inline]
    fn to_u64(self) -> u64 {
        self.into()
    }
}

impl IdWidth for u64 {
    const MAX: u64 = u64::MAX;
    #[inline]
    fn from_index(index: u32) -> Self {
        index.into()
    }
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
}

/// A ring protocol: its wire types and where they carry the request ID.
///
/// Each slot of the ring is the union of one request and one response (`ring.h`'s
/// `union X_sring_entry`), so its size is the larger of the two.
///
/// ```
/// use xen_ring::Protocol;
/// use zerocopy::{FromBytes, Immutable, IntoBytes};
///
/// /// netif tx: 12-byte requests, 4-byte responses, 16-bit IDs.
/// #[repr(C)]
/// #[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
/// struct TxRequest { gref: u32, offset: u16, flags: u16, id: u16, size: u16 }
/// #[repr(C)]
/// #[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
/// struct TxResponse { id: u16, status: i16 }
///
/// enum NetifTx {}
/// impl Protocol for NetifTx {
///     type Request = TxRequest;
///     type Response = TxResponse;
///     type Id = u16;
///     fn set_request_id(req: &mut TxRequest, id: u16) { req.id = id }
///     fn request_id(req: &TxRequest) -> u16 { req.id }
///     fn set_response_id(rsp: &mut TxResponse, id: u16) { rsp.id = id }
///     fn response_id(rsp: &TxResponse) -> u16 { rsp.id }
/// }
/// assert_eq!(xen_ring::slot_size::<NetifTx>(), 12);
/// ```
pub trait Protocol: 'static {
    /// The request as it sits in the ring.
    type Request: FromBytes + IntoBytes + Immutable;
    /// The response as it sits in the ring.
    type Response: FromBytes + IntoBytes + Immutable;
    /// The width of the ID field (`u16` for netif, `u64` for blkif).
    type Id: IdWidth;

    /// Stores `id` in a request (the ring does this; callers never pick IDs).
    fn set_request_id(req: &mut Self::Request, id: Self::Id);
    /// The ID a request carries (the backend echoes it in its response).
    fn request_id(req: &Self::Request) -> Self::Id;
    /// Stores `id` in a response (backends echo the request's ID).
    fn set_response_id(rsp: &mut Self::Response, id: Self::Id);
    /// The ID a response carries: untrusted, the ring validates it.
    fn response_id(rsp: &Self::Response) -> Self::Id;
}

/// The size of one ring slot for protocol `P`: the larger of its request and response.
pub const fn slot_size<P: Protocol>() -> usize {
    let req = core::mem::size_of::<P::Request>();
    let rsp = core::mem::size_of::<P::Response>();
    if req > rsp { req } else { rsp }
}
