//! Ring errors.

/// Why a ring stopped trusting its peer. Once a ring is broken it stays broken: every later
/// call returns [`RingError::Broken`] with the first reason, and nothing in flight is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The backend published more responses than there are outstanding requests
    /// (`RING_RESPONSE_PROD_OVERFLOW`, and stricter: a response can only answer a published
    /// request).
    #[error(
        "response producer {rsp_prod:#x} runs {} past rsp_cons {rsp_cons:#x} with only {outstanding} requests outstanding",
        rsp_prod.wrapping_sub(*rsp_cons)
    )]
    ResponseProdOverflow {
        /// The `rsp_prod` read from the ring.
        rsp_prod: u32,
        /// Our consumer index.
        rsp_cons: u32,
        /// Requests published and not yet answered.
        outstanding: u32,
    },
    /// A response carried an ID not below the ring size.
    #[error("response ID {id} is out of range (ring of {size})")]
    IdOutOfRange {
        /// The ID.
        id: u64,
        /// The ring size.
        size: u32,
    },
    /// A response carried an ID with no request in flight: unknown, a duplicate, or one
    /// already completed.
    #[error("response ID {id} has no request in flight (unknown, duplicate or already completed)")]
    IdNotInFlight {
        /// The ID.
        id: u64,
    },
    /// The frontend published more requests than the ring holds unanswered
    /// (`RING_REQUEST_PROD_OVERFLOW`).
    #[error(
        "request producer {req_prod:#x} runs more than a ring ({size}) past rsp_prod_pvt {rsp_prod_pvt:#x}"
    )]
    RequestProdOverflow {
        /// The `req_prod` read from the ring.
        req_prod: u32,
        /// Our private response producer.
        rsp_prod_pvt: u32,
        /// The ring size.
        size: u32,
    },
    /// The driver found a response invalid for its protocol (a wrong operation, a bad status)
    /// and broke the ring itself.
    #[error("the driver rejected a response: {0}")]
    Rejected(&'static str),
}

/// What a ring operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The peer misbehaved; the ring is unusable from now on.
    #[error("ring is broken: {0}")]
    Broken(Broken),
    /// No free slot (and so no free ID): wait for responses.
    #[error("ring is full")]
    Full,
    /// A backend tried to respond with no request left unanswered (a bug in the backend
    /// driver, not peer input; the ring is unchanged).
    #[error("no consumed request is waiting for a response")]
    NoRequestPending,
}

/// Why memory cannot hold a ring of a given protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not even one entry fits after the 64-byte header.
    #[error("{bytes} bytes hold no {slot}-byte entry after the header")]
    TooSmall {
        /// Memory size.
        bytes: usize,
        /// Entry size.
        slot: usize,
    },
    /// The ring would have more entries than the protocol's ID type can name.
    #[error("a ring of {size} entries needs IDs up to {}, wider than the protocol's", size - 1)]
    IdTooNarrow {
        /// Ring size.
        size: u32,
    },
}
