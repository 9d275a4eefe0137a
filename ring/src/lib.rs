//! Xen shared I/O rings (`io/ring.h`) with leased request IDs.
//!
//! A frontend and a backend share a ring of request/response slots in the frontend's
//! granted page(s). This crate is that ring, made safe against a hostile peer:
//!
//! * **IDs come from the ring** (DESIGN invariant 4). [`FrontRing::lease`] hands out a
//!   [`RequestId`]: not `Copy` nor `Clone`, its value picked by the ring's own allocator
//!   (below the ring size), used up by [`RequestId::submit`], which also hands the ring an
//!   in-flight value of the caller's type (grants, buffers). The ring owns that value until
//!   the response carrying the ID is consumed; [`FrontRing::poll_response`] returns both, and
//!   only then is the ID free again. Two requests cannot share an ID (the MSA00 bug).
//! * **Only the frontend initialises** (invariant 5): [`FrontRing::new`] needs
//!   [`FrontMemory`] (its own pages); [`BackRing::attach`] never writes the page.
//! * **Peer data is untrusted** (invariant 6): each entry is copied out exactly once with a
//!   volatile copy, then validated; producer indices are checked against the ring
//!   (`RING_RESPONSE_PROD_OVERFLOW`, `RING_REQUEST_PROD_OVERFLOW`); an ID out of range,
//!   unknown, duplicated or already completed puts the ring in the [`Broken`] state, which
//!   fails every later call and frees nothing. Nothing the peer writes can make it panic or
//!   loop: each call does a bounded amount of work.
//! * **Memory only through `SharedMem`** (invariant 7): see [`memory`]. Rings of 1 to 16
//!   pages, contiguous or as a [`PageRing`] of separate pages (entries may straddle pages).
//! * **Barriers as in `ring.h`** (invariant 8), indices wrapping `u32`.
//!
//! # Example
//!
//! ```
//! use xen_gnttab::{Domid, Granted, Grantor, Writable, local::LocalTable};
//! use xen_ring::{BackRing, FrontRing, Protocol};
//! use zerocopy::{FromBytes, Immutable, IntoBytes};
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable)]
//! struct Req { id: u16, len: u16 }
//! #[repr(C)]
//! #[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable)]
//! struct Rsp { id: u16, status: i16 }
//! enum Demo {}
//! impl Protocol for Demo {
//!     type Request = Req;
//!     type Response = Rsp;
//!     type Id = u16;
//!     fn set_request_id(r: &mut Req, id: u16) { r.id = id }
//!     fn request_id(r: &Req) -> u16 { r.id }
//!     fn set_response_id(r: &mut Rsp, id: u16) { r.id = id }
//!     fn response_id(r: &Rsp) -> u16 { r.id }
//! }
//!
//! // The frontend grants a page and initialises the ring in it; the ring owns the grant.
//! let table = LocalTable::new_local(Domid(1), 64);
//! let page = Granted::<_, Writable>::new(&table, table.alloc_page()?, Domid(0))
//!     .map_err(|(_, e)| e)?;
//! let mut front = FrontRing::<Demo, _, Vec<u8>>::new(page).map_err(|(_, e)| e).unwrap();
//! assert_eq!(front.size(), 512); // (4096 - 64) / 4 = 1008, rounded down
//!
//! // Submit: lease an ID, hand the ring the request and the buffer it uses.
//! front.lease()?.submit(Req { id: 0, len: 3 }, b"abc".to_vec());
//! let notify = front.push_requests()?;
//! assert!(notify.needed()); // the backend asked (req_event = 1) to hear of the first request
//!
//! // A backend attaches to the same page (here through a view; normally a foreign mapping).
//! let mut back = BackRing::<Demo, _>::attach(front.memory().mem()).map_err(|(_, e)| e).unwrap();
//! let req = back.next_request()?.expect("one request");
//! back.respond(Rsp { id: req.id, status: 0 })?;
//! assert!(back.push_responses()?.needed());
//! assert!(!back.final_check_for_requests()?); // nothing more to do
//!
//! // The response comes back with the buffer, and only now is the ID free.
//! let (rsp, buf) = front.poll_response()?.expect("one response");
//! assert_eq!((rsp.status, &buf[..]), (0, &b"abc"[..]));
//! assert_eq!(front.free_requests(), 512);
//! // Take the page back to end its grant.
//! let (page, in_flight) = front.into_parts();
//! assert!(in_flight.is_empty());
//! page.end_access().expect("nobody mapped it");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the notify logic maps to `ring.h`
//!
//! | `ring.h` | here |
//! |---|---|
//! | `SHARED_RING_INIT` + `FRONT_RING_INIT` | [`FrontRing::new`] (`new_at` for a start index other than 0) |
//! | `BACK_RING_ATTACH(r, s, size, s->rsp_prod)` | [`BackRing::attach`] |
//! | `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` | [`FrontRing::push_requests`] |
//! | `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` | [`BackRing::push_responses`] |
//! | `RING_FINAL_CHECK_FOR_RESPONSES` | [`FrontRing::final_check_for_responses`] |
//! | `RING_FINAL_CHECK_FOR_REQUESTS` | [`BackRing::final_check_for_requests`] |
//! | `RING_COPY_RESPONSE` / `RING_COPY_REQUEST` | [`FrontRing::poll_response`] / [`BackRing::next_request`] |
//! | `rp = prod; rmb(); while (cons != rp) { RING_COPY_*; ... }` | [`FrontRing::poll_responses`] / [`BackRing::answer_requests`] (and [`FrontRing::submit_batch`] for producers) |
//! | `RING_FREE_REQUESTS` | [`FrontRing::free_requests`] |
//! | `RING_RESPONSE_PROD_OVERFLOW` / `RING_REQUEST_PROD_OVERFLOW` | checked on every read of the peer's producer index |
//!
//! Push: `xen_wmb(); prod = new` is a `Release` store of the producer index; `xen_mb()` is
//! `fence(SeqCst)`; then the peer's event threshold is loaded and
//! `notify = (new - event) < (new - old)` in wrapping `u32`. Unlike the macro, `old` is not
//! read back from the shared page but kept privately, so the peer cannot steer the decision.
//! Final check: if nothing is unconsumed, store `event = cons + 1`, `fence(SeqCst)`, check
//! again. Consumers load the peer's producer index with `Acquire` (`rmb`).
//!
//! The two fences are what prevents a lost wakeup: the producer stores its index and then
//! loads the event threshold, the consumer stores the threshold and then loads the index (a
//! store-buffering pattern). With `Release`/`Acquire` alone both loads may see the old values:
//! the producer decides not to notify and the consumer goes to sleep. `tests/loom.rs` checks
//! both directions with the fences, and shows loom finding the lost wakeup without them.
//!
//! # Benchmark
//!
//! `cargo xtask bench ring` (see `xtask/src/bench/ring.rs`) runs a frontend thread submitting
//! batches and a backend thread answering, over a one-page ring, against the same workload
//! written in C with Xen's own `ring.h` macros (`xtask/c/ring_bench.c`, built with `cc -O2`
//! and loaded into the same process). The C side is a hardened Linux-style frontend: requests
//! built privately and copied in, `RING_COPY_RESPONSE`, `RING_RESPONSE_PROD_OVERFLOW`, a
//! shadow table and free list with the response ID checked; its backend uses
//! `RING_COPY_REQUEST` and `RING_REQUEST_PROD_OVERFLOW`. Both copy every byte of every entry
//! (GCC reduces a volatile struct copy to the fields used afterwards, so the C copies are
//! escaped to keep them whole), read the shared indices equally often (consumers snapshot the
//! producer index and take that many entries: [`BackRing::unconsumed_requests`]) and use the
//! same notification mechanism (a pending flag, spin with `pause`, yield every 256 spins);
//! rounds interleave.
//!
//! **Batches.** [`FrontRing::submit_batch`], [`FrontRing::poll_responses`] and
//! [`BackRing::answer_requests`] are the loops of `ring.h` consumers: one `Broken` check, one
//! read of the peer's producer index and, when the memory is contiguous
//! ([`RingMemory::contiguous`]), one bounds check per batch. Entries are reached through a
//! [`SharedSlots`](xen_gnttab::SharedSlots) view whose bounds were checked once when it was
//! made, indexed by `idx & mask`, with the entry size a compile-time constant so each copy
//! unrolls. Every entry is still copied once and validated exactly as by the single-entry
//! calls, and IDs still come only from the ring's allocator.
//!
//! What made batches slow, found with callgrind on a single-threaded loop (instructions per
//! round trip at batch 32, netif / blkif; C: 62 / 104):
//!
//! | change | netif | blkif |
//! |---|---|---|
//! | volatile copies byte by byte until 8-aligned, `Vec` free list, panic arguments on the hot path | 243 | not measured |
//! | whole aligned words per alignment, cold panic, fixed free stack | 150 | 198 |
//! | words at any alignment (a packed wrapper: one unaligned access, as a C struct copy), plan from the length only: no dispatch | 125 | 149 |
//! | batch calls: one `Broken` check, producer read and bounds check per batch | 98 | 140 |
//! | batch loops with indices in locals, one loop per kind of memory | 86 | 116 |
//!
//! **Fairness.** Both sides do the same work per request: an ID from a free list, a private
//! request copied into its slot once, a shadow/in-flight entry set; the backend copies the
//! request out once and writes a response; the frontend copies the response out once, checks
//! its ID in range and in flight (Linux's hardened netfront does the same since 5.17:
//! `RING_RESPONSE_PROD_OVERFLOW` and a response ID checked against its pending table; ours is
//! stricter, `rsp_prod` may not pass the requests published), frees the ID. The C side's
//! `xen_mb()` is a locked add to the stack, the x86-64 `virt_mb()` of a Linux kernel frontend
//! and the instruction Rust's `fence(SeqCst)` compiles to; it was `mfence` (libxenctrl's
//! choice) before, which cost C more per barrier and flattered us at batch 1 (2.5 times C).
//!
//! Figures on the development machine (2 cores shared with other jobs running QEMU and
//! compilers, so they move by tens of percent between runs and collapse under load; median of
//! 7 rounds, round trips per second, notifications per request counting both directions):
//!
//! | entry bytes | batch | ours rt/s | C rt/s | ours notif/req | C notif/req | ours/C |
//! |---|---|---|---|---|---|---|
//! | 12 | 1 | 8779457 | 7550599 | 1.9991 | 1.9981 | 1.163 |
//! | 12 | 8 | 43233165 | 26780244 | 0.2500 | 0.2500 | 1.614 |
//! | 12 | 32 | 83075471 | 46049300 | 0.0625 | 0.0625 | 1.804 |
//! | 112 | 1 | 9466356 | 6694094 | 1.9980 | 1.9998 | 1.414 |
//! | 112 | 8 | 17402569 | 15617027 | 0.2500 | 0.2500 | 1.114 |
//! | 112 | 32 | 22649350 | 19006872 | 0.0625 | 0.0625 | 1.192 |
//!
//! `BENCH ring ratio=1.114 goal=1.0`. The run before it, at the same load (about 2.4), gave
//! 1.040 (netif batch 1 lowest; batch 32: netif 1.68, blkif 1.24). Batch 1 is the closest
//! case: it is bound by wake-up latency and barriers, not by per-entry work. Under a load of 5
//! (other jobs compiling on both cores) throughput drops ten- to a hundredfold on both sides
//! and single ratios land anywhere between 0.2 and 13, for either side: such runs say
//! nothing. The callgrind counts above are the deterministic measure: per entry we now
//! execute about 1.4 (netif) and 1.1 (blkif) times C's instructions. That we are faster per
//! second anyway is not explained by counts; GCC builds each C entry with 16-bit stores into a
//! stack copy that it reads back in wider words (a likely store-forwarding stall, seen in the
//! disassembly, not measured). Notifications per request are the same on both sides.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi;
mod back;
mod error;
mod front;
pub mod memory;
mod protocol;

pub use back::BackRing;
pub use error::{Broken, LayoutError, RingError};
pub use front::{FrontRing, RequestId, shared_indices};
pub use memory::{FrontMemory, PageListError, PageRing, RingMemory, RingPage};
pub use protocol::{IdWidth, Protocol, slot_size};

/// Whether the peer must be notified (over its event channel) after a push.
///
/// Ignoring it may leave the peer asleep with work waiting, so it is `#[must_use]`.
#[must_use = "notify the peer when `needed()`, or it may sleep with work waiting"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify(bool);

impl Notify {
    /// True if the peer asked to be notified of what was just published.
    #[inline]
    pub fn needed(self) -> bool {
        self.0
    }
}
