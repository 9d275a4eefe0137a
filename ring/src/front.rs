//! The frontend half: initialises the ring, leases IDs, owns in-flight values, validates
//! every response.

use crate::Notify;
use crate::abi::{self, HEADER_SIZE, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD, SringHeader};
use crate::error::{Broken, LayoutError, RingError};
use crate::memory::{Entries, FrontMemory, RingMemory};
use crate::protocol::{IdWidth, Protocol, slot_size};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use xen_gnttab::shared::{Ordering, fence};
use zerocopy::{FromZeros, IntoBytes};

/// Checks that `bytes` of memory hold a ring of protocol `P` and returns its size.
pub(crate) fn layout<P: Protocol>(bytes: usize) -> Result<u32, LayoutError> {
    let slot = slot_size::<P>();
    let size = abi::ring_size(bytes, slot);
    if size == 0 {
        return Err(LayoutError::TooSmall { bytes, slot });
    }
    if u64::from(size - 1) > <P::Id as IdWidth>::MAX {
        return Err(LayoutError::IdTooNarrow { size });
    }
    Ok(size)
}

/// The free IDs: a stack in a fixed array of the ring's size, so pushing never allocates
/// (each ID is in it at most once, so it never overflows; C drivers keep the same free list).
struct IdStack {
    ids: Box<[u32]>,
    len: usize,
}

impl IdStack {
    /// All IDs `0..size` free, the lowest on top.
    fn full(size: u32) -> Self {
        let ids: Box<[u32]> = (0..size).rev().collect();
        IdStack {
            len: ids.len(),
            ids,
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<u32> {
        self.len = self.len.checked_sub(1)?;
        self.ids.get(self.len).copied()
    }

    /// Pushes an ID that is not in the stack (one that was popped); there is always room.
    #[inline]
    fn push(&mut self, id: u32) {
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }
}

/// The frontend's end of a shared ring of protocol `P` in memory `M`, whose requests carry
/// in-flight values of type `T`.
///
/// * Only a frontend creates one, and creating it initialises the shared page
///   (`SHARED_RING_INIT` + `FRONT_RING_INIT`); `M` must be [`FrontMemory`].
/// * A request is submitted through a [`RequestId`] leased from the ring's own allocator
///   ([`lease`](Self::lease)): IDs are the slots of the ring's in-flight table, each value
///   below the ring size, handed out once until the response carrying it is consumed.
/// * The in-flight value (grants, buffers) is owned by the ring until then and comes back
///   with the response from [`poll_response`](Self::poll_response).
/// * Every response is copied out of shared memory exactly once and validated; a backend that
///   breaks the protocol puts the ring in the [`Broken`] state, where every call fails and
///   nothing in flight is freed (take it back with [`into_parts`](Self::into_parts) after
///   disconnecting).
pub struct FrontRing<P: Protocol, M: RingMemory, T> {
    mem: M,
    mask: u32,
    /// `req_prod_pvt`: requests written (published or not).
    req_prod_pvt: u32,
    /// The `req_prod` we last published: the `old` of the notify check, kept privately so the
    /// backend cannot influence it by scribbling on `req_prod`.
    req_published: u32,
    /// `rsp_cons`.
    rsp_cons: u32,
    /// The last `rsp_prod` read and validated; responses up to it may be consumed.
    rsp_prod_seen: u32,
    /// Indexed by ID: `Some` while a request with that ID is in flight.
    in_flight: Vec<Option<T>>,
    /// IDs not in flight and not leased.
    free: IdStack,
    broken: Option<Broken>,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol, M: RingMemory, T> fmt::Debug for FrontRing<P, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontRing")
            .field("size", &self.size())
            .field("req_prod_pvt", &self.req_prod_pvt)
            .field("req_published", &self.req_published)
            .field("rsp_cons", &self.rsp_cons)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol, M: FrontMemory, T> FrontRing<P, M, T> {
    /// Initialises a ring in `mem` (the frontend's own page(s)) and takes ownership of it.
    ///
    /// Writes the header of `SHARED_RING_INIT` (producers 0, event thresholds 1) and zeroes
    /// the entries, so no stale data is exposed to the backend (XSA-403).
    pub fn new(mem: M) -> Result<Self, (M, LayoutError)> {
        Self::new_at(mem, 0)
    }

    /// As [`new`](Self::new), with every index starting at `start` instead of 0.
    ///
    /// A compliant backend attaches at whatever `rsp_prod` says, so this is a valid ring; it
    /// exists so tests can start indices just below 2^32 and cross the wrap.
    pub fn new_at(mem: M, start: u32) -> Result<Self, (M, LayoutError)> {
        let size = match layout::<P>(mem.ring_bytes()) {
            Ok(size) => size,
            Err(e) => return Err((mem, e)),
        };
        let zeros = [0u8; 256];
        let end = abi::entry_offset(size, slot_size::<P>());
        let mut off = HEADER_SIZE;
        while off < end {
            let n = (end - off).min(zeros.len());
            mem.write_at(off, &zeros[..n]);
            off += n;
        }
        let h = mem.header();
        h.write(0, &SringHeader::initial(start));
        // Publish the initialised page before any later store (e.g. of the grant reference to
        // xenstore) that lets the backend find it.
        fence(Ordering::Release);
        let free = IdStack::full(size);
        Ok(FrontRing {
            mem,
            mask: size - 1,
            req_prod_pvt: start,
            req_published: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            in_flight: (0..size).map(|_| None).collect(),
            free,
            broken: None,
            _protocol: PhantomData,
        })
    }
}

impl<P: Protocol, M: RingMemory, T> FrontRing<P, M, T> {
    /// `RING_SIZE`: the number of slots (a power of two), and so the number of IDs.
    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    /// `RING_FREE_REQUESTS`: slots (and IDs) free for new requests.
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests submitted whose response has not been consumed (published or not).
    pub fn in_flight(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests submitted but not yet published with [`push_requests`](Self::push_requests).
    pub fn unpublished(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.req_published)
    }

    /// The private indices `(req_prod_pvt, rsp_cons)`.
    pub fn indices(&self) -> (u32, u32) {
        (self.req_prod_pvt, self.rsp_cons)
    }

    /// Why the ring is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// The ring memory (e.g. to read the grant reference of its page).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    #[inline]
    fn check(&self) -> Result<(), RingError> {
        match self.broken {
            None => Ok(()),
            Some(b) => Err(RingError::Broken(b)),
        }
    }

    #[cold]
    fn fail(&mut self, why: Broken) -> RingError {
        break_ring(&mut self.broken, why)
    }

    /// Breaks the ring because the driver found a response invalid for its protocol (for
    /// example a blkif response whose operation differs from the request's). Returns the error
    /// to propagate; if the ring was already broken, the first reason is kept.
    pub fn reject(&mut self, why: &'static str) -> RingError {
        self.fail(Broken::Rejected(why))
    }

    /// Leases a free ID (and the slot for its request). Fails with [`RingError::Full`] when
    /// every slot is in flight.
    ///
    /// The lease borrows the ring until it is submitted or dropped (dropping it returns the
    /// ID unused), so one lease is alive at a time: a request made of several slots is
    /// submitted one lease after another, then published with one
    /// [`push_requests`](Self::push_requests).
    #[inline]
    pub fn lease(&mut self) -> Result<RequestId<'_, P, M, T>, RingError> {
        self.check()?;
        match self.free.pop() {
            Some(id) => Ok(RequestId { ring: self, id }),
            None => Err(RingError::Full),
        }
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the requests submitted so far and says
    /// whether the backend must be notified.
    ///
    /// `old` is the private copy of the index last published, never read back from the page.
    #[inline]
    pub fn push_requests(&mut self) -> Result<Notify, RingError> {
        self.check()?;
        let (old, new) = (self.req_published, self.req_prod_pvt);
        if old == new {
            // ring.h computes `new - event < 0` here: never true for unsigned indices.
            return Ok(Notify(false));
        }
        let h = self.mem.header();
        h.store_u32(REQ_PROD, new, Ordering::Release); // xen_wmb(); req_prod = new
        fence(Ordering::SeqCst); // xen_mb()
        let event = h.load_u32(REQ_EVENT, Ordering::Relaxed);
        self.req_published = new;
        Ok(Notify(new.wrapping_sub(event) < new.wrapping_sub(old)))
    }

    /// Reads and validates `rsp_prod`; returns how many responses may be consumed.
    #[inline]
    fn refresh(&mut self) -> Result<u32, RingError> {
        let rp = self.mem.header().load_u32(RSP_PROD, Ordering::Acquire); // READ_ONCE; rmb()
        let n = rp.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_published.wrapping_sub(self.rsp_cons);
        if n > outstanding {
            return Err(self.fail(Broken::ResponseProdOverflow {
                rsp_prod: rp,
                rsp_cons: self.rsp_cons,
                outstanding,
            }));
        }
        self.rsp_prod_seen = rp;
        Ok(n)
    }

    /// `XEN_RING_NR_UNCONSUMED_RESPONSES`: reads and validates `rsp_prod` once and returns how
    /// many responses can be taken now. The next that many
    /// [`poll_response`](Self::poll_response) calls return them without reading `rsp_prod`
    /// again.
    #[inline]
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        self.check()?;
        self.refresh()
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`, with `rsp_prod` validated.
    pub fn has_unconsumed_responses(&mut self) -> Result<bool, RingError> {
        self.check()?;
        Ok(self.rsp_cons != self.rsp_prod_seen || self.refresh()? > 0)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: true if responses are waiting; if none are, first
    /// asks to be notified of the next one (`rsp_event = rsp_cons + 1`, then `xen_mb()`) and
    /// checks again, so a response published meanwhile is not missed.
    ///
    /// When this returns false the caller may sleep until the next event.
    #[inline]
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.has_unconsumed_responses()? {
            return Ok(true);
        }
        let h = self.mem.header();
        h.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst); // xen_mb()
        Ok(self.refresh()? > 0)
    }

    /// Takes the next response, if one is published: copies it out once
    /// (`RING_COPY_RESPONSE`), validates its ID, and returns it with the in-flight value of
    /// the request it answers. Only then is that ID free again.
    ///
    /// Returns `Ok(None)` when no response is waiting. Does one response per call: a caller's
    /// loop over it ends when the responses published end (at most one ring's worth).
    /// [`poll_responses`](Self::poll_responses) takes a batch for less work per response.
    #[inline]
    pub fn poll_response(&mut self) -> Result<Option<(P::Response, T)>, RingError> {
        self.check()?;
        if self.rsp_cons == self.rsp_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let mut rsp = P::Response::new_zeroed();
        let off = abi::entry_offset(self.rsp_cons & self.mask, slot_size::<P>());
        self.mem.read_at(off, rsp.as_mut_bytes());
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        let value = complete::<P, T>(
            &mut self.in_flight,
            &mut self.free,
            &mut self.broken,
            self.mask,
            &rsp,
        )?;
        Ok(Some((rsp, value)))
    }

    /// Takes up to `max` published responses in one go, the consumer loop of `ring.h`
    /// (`rp = rsp_prod; rmb(); while (rsp_cons != rp) ...`): reads and validates `rsp_prod`
    /// once, then copies each response out once, validates its ID exactly as
    /// [`poll_response`](Self::poll_response) does, frees the ID and calls
    /// `f(response, in-flight value)`. Returns how many were taken (0 if none is waiting).
    ///
    /// One `Broken` check, one producer-index read and (on contiguous memory) one bounds
    /// check per batch instead of per response. If a response is invalid, the ring breaks:
    /// the responses before it have been handed to `f`, the rest stay in flight, and the
    /// error is returned.
    #[inline]
    pub fn poll_responses(
        &mut self,
        max: u32,
        mut f: impl FnMut(P::Response, T),
    ) -> Result<u32, RingError> {
        self.check()?;
        let n = self.refresh()?.min(max);
        let mask = self.mask;
        let FrontRing {
            mem,
            rsp_cons,
            in_flight,
            free,
            broken,
            ..
        } = self;
        // One loop per kind of memory, so the choice is made once per batch.
        match Entries::<P, M>::new(mem, mask + 1) {
            Entries::Flat(slots) => {
                let read = |i| slots.read(i);
                consume::<P, T>(n, read, rsp_cons, in_flight, free, broken, mask, &mut f)
            }
            paged => {
                let read = |i| paged.read(i);
                consume::<P, T>(n, read, rsp_cons, in_flight, free, broken, mask, &mut f)
            }
        }
    }

    /// Submits up to `max` requests in one go, as many as there are free slots: for each,
    /// leases a free ID, calls `make(k)` (`k` counting from 0) for the request and its
    /// in-flight value, stores the ID in the request (whatever it held) and copies it into
    /// the next slot once, as [`RequestId::submit`] does. Returns how many were submitted;
    /// they become visible at the next [`push_requests`](Self::push_requests).
    ///
    /// The caller never sees or picks an ID: each comes from the ring's allocator and goes
    /// back only with its response. One `Broken` check and (on contiguous memory) one bounds
    /// check per batch instead of per request.
    #[inline]
    pub fn submit_batch(
        &mut self,
        max: u32,
        mut make: impl FnMut(u32) -> (P::Request, T),
    ) -> Result<u32, RingError> {
        self.check()?;
        let n = max.min(self.free_requests());
        let mask = self.mask;
        let FrontRing {
            mem,
            req_prod_pvt,
            in_flight,
            free,
            ..
        } = self;
        Ok(match Entries::<P, M>::new(mem, mask + 1) {
            Entries::Flat(slots) => {
                let write = |i, req: &P::Request| slots.write(i, req);
                produce::<P, T>(n, write, req_prod_pvt, in_flight, free, &mut make)
            }
            paged => {
                let write = |i, req: &P::Request| paged.write(i, req);
                produce::<P, T>(n, write, req_prod_pvt, in_flight, free, &mut make)
            }
        })
    }

    /// Takes the ring apart: its memory and every value still in flight.
    ///
    /// For after the backend disconnected or the ring broke: in-flight values may still be in
    /// use by the backend, so grants among them must be ended (or dropped into the reclaim
    /// queue), never freed.
    pub fn into_parts(self) -> (M, Vec<T>) {
        let values = self.in_flight.into_iter().flatten().collect();
        (self.mem, values)
    }
}

/// Breaks a ring (keeping the first reason) and returns the error to propagate.
#[cold]
fn break_ring(broken: &mut Option<Broken>, why: Broken) -> RingError {
    RingError::Broken(*broken.get_or_insert(why))
}

/// Validates a response's ID against the in-flight table: in range and in flight, else the
/// ring breaks. Takes the in-flight value and frees the ID.
#[inline(always)]
fn complete<P: Protocol, T>(
    in_flight: &mut [Option<T>],
    free: &mut IdStack,
    broken: &mut Option<Broken>,
    mask: u32,
    rsp: &P::Response,
) -> Result<T, RingError> {
    let id = P::response_id(rsp).to_u64();
    if id > u64::from(mask) {
        let size = mask + 1;
        return Err(break_ring(broken, Broken::IdOutOfRange { id, size }));
    }
    // In range: `id <= mask < in_flight.len()`.
    let idx = id as u32;
    match in_flight.get_mut(idx as usize).and_then(Option::take) {
        Some(value) => {
            free.push(idx);
            Ok(value)
        }
        None => Err(break_ring(broken, Broken::IdNotInFlight { id })),
    }
}

/// The loop of [`FrontRing::poll_responses`], over `n` published responses read by `read`.
///
/// The consumer index is advanced in a local and stored before each response is handed
/// to `f`, so a panic in `f` leaves the ring consistent.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn consume<P: Protocol, T>(
    n: u32,
    read: impl Fn(u32) -> P::Response,
    rsp_cons: &mut u32,
    in_flight: &mut [Option<T>],
    free: &mut IdStack,
    broken: &mut Option<Broken>,
    mask: u32,
    f: &mut impl FnMut(P::Response, T),
) -> Result<u32, RingError> {
    let mut cons = *rsp_cons;
    for _ in 0..n {
        let rsp = read(cons);
        cons = cons.wrapping_add(1);
        *rsp_cons = cons;
        let value = complete::<P, T>(in_flight, free, broken, mask, &rsp)?;
        f(rsp, value);
    }
    Ok(n)
}

/// The loop of [`FrontRing::submit_batch`]: `n` requests (with `n` IDs free), written by
/// `write`. Returns how many were submitted.
#[inline(always)]
fn produce<P: Protocol, T>(
    n: u32,
    write: impl Fn(u32, &P::Request),
    req_prod_pvt: &mut u32,
    in_flight: &mut [Option<T>],
    free: &mut IdStack,
    make: &mut impl FnMut(u32) -> (P::Request, T),
) -> u32 {
    let mut prod = *req_prod_pvt;
    for k in 0..n {
        let (mut req, value) = make(k);
        // Free IDs and free slots are counted alike: `n` IDs are free.
        let Some(id) = free.pop() else {
            return k;
        };
        P::set_request_id(&mut req, P::Id::from_index(id));
        write(prod, &req);
        prod = prod.wrapping_add(1);
        *req_prod_pvt = prod;
        if let Some(slot) = in_flight.get_mut(id as usize) {
            *slot = Some(value);
        }
    }
    n
}

/// An ID leased from a [`FrontRing`]'s allocator: the only way to submit a request.
///
/// Not `Copy` nor `Clone`, and its value is chosen by the ring. It is used up by
/// [`submit`](Self::submit), which stores it in the request; dropping it unused gives it back.
#[must_use = "a leased ID does nothing until submitted; dropping it returns it"]
pub struct RequestId<'r, P: Protocol, M: RingMemory, T> {
    ring: &'r mut FrontRing<P, M, T>,
    id: u32,
}

/// Marks a [`RequestId`] that has been used up.
const USED: u32 = u32::MAX;

impl<P: Protocol, M: RingMemory, T> RequestId<'_, P, M, T> {
    /// The ID's value (for protocols that index per-ID state, and for logs).
    pub fn id(&self) -> P::Id {
        P::Id::from_index(self.id)
    }

    /// Writes `req` (with this ID stored in it, whatever it held) into the next free slot and
    /// hands `value` to the ring until the response carrying this ID is consumed.
    ///
    /// The request is built privately and copied into the ring once; it is never read back.
    /// It becomes visible to the backend at the next [`FrontRing::push_requests`].
    #[inline]
    pub fn submit(mut self, mut req: P::Request, value: T) {
        let id = core::mem::replace(&mut self.id, USED);
        let ring = &mut *self.ring;
        P::set_request_id(&mut req, P::Id::from_index(id));
        let off = abi::entry_offset(ring.req_prod_pvt & ring.mask, slot_size::<P>());
        ring.mem.write_at(off, req.as_bytes());
        ring.req_prod_pvt = ring.req_prod_pvt.wrapping_add(1);
        if let Some(slot) = ring.in_flight.get_mut(id as usize) {
            *slot = Some(value);
        }
    }
}

impl<P: Protocol, M: RingMemory, T> Drop for RequestId<'_, P, M, T> {
    fn drop(&mut self) {
        if self.id != USED {
            self.ring.free.push(self.id);
        }
    }
}

impl<P: Protocol, M: RingMemory, T> fmt::Debug for RequestId<'_, P, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.id).finish()
    }
}

/// Reads the four shared indices `(req_prod, req_event, rsp_prod, rsp_event)` of a ring, for
/// tests and diagnostics. Nothing the rings decide depends on this.
pub fn shared_indices<M: RingMemory>(mem: &M) -> (u32, u32, u32, u32) {
    let h = mem.header();
    (
        h.load_u32(REQ_PROD, Ordering::Acquire),
        h.load_u32(REQ_EVENT, Ordering::Acquire),
        h.load_u32(RSP_PROD, Ordering::Acquire),
        h.load_u32(RSP_EVENT, Ordering::Acquire),
    )
}
