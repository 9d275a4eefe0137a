//! The backend half: attaches without writing, copies each request out once, checks the
//! frontend's producer index.

use crate::Notify;
use crate::abi::{self, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::error::{Broken, LayoutError, RingError};
use crate::front::layout;
use crate::memory::{Entries, RingMemory};
use crate::protocol::{Protocol, slot_size};
use core::fmt;
use core::marker::PhantomData;
use xen_gnttab::shared::{Ordering, fence};
use zerocopy::{FromZeros, IntoBytes};

/// The backend's end of a shared ring of protocol `P` in memory `M` (typically the
/// frontend's page mapped with a writable foreign mapping).
///
/// It attaches to a ring the frontend initialised and never initialises one (there is no
/// constructor that writes the page). It answers each request with exactly one response; the
/// response IDs are the backend driver's business (echo the request's), the frontend checks
/// them.
pub struct BackRing<P: Protocol, M: RingMemory> {
    mem: M,
    mask: u32,
    /// `req_cons`.
    req_cons: u32,
    /// The last `req_prod` read and validated.
    req_prod_seen: u32,
    /// `rsp_prod_pvt`.
    rsp_prod_pvt: u32,
    /// The `rsp_prod` we last published (private `old` of the notify check).
    rsp_published: u32,
    broken: Option<Broken>,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol, M: RingMemory> fmt::Debug for BackRing<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackRing")
            .field("size", &self.size())
            .field("req_cons", &self.req_cons)
            .field("rsp_prod_pvt", &self.rsp_prod_pvt)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol, M: RingMemory> BackRing<P, M> {
    /// Attaches to the ring the frontend initialised in `mem`, without writing it
    /// (`BACK_RING_ATTACH` at the shared `rsp_prod`, which a fresh ring has at its start
    /// index: 0 with `SHARED_RING_INIT`).
    ///
    /// Any `rsp_prod` is a valid start for wrapping indices, so this reads no other index and
    /// trusts nothing: requests are checked as they are consumed.
    pub fn attach(mem: M) -> Result<Self, (M, LayoutError)> {
        let size = match layout::<P>(mem.ring_bytes()) {
            Ok(size) => size,
            Err(e) => return Err((mem, e)),
        };
        let start = mem.header().load_u32(RSP_PROD, Ordering::Acquire);
        Ok(BackRing {
            mem,
            mask: size - 1,
            req_cons: start,
            req_prod_seen: start,
            rsp_prod_pvt: start,
            rsp_published: start,
            broken: None,
            _protocol: PhantomData,
        })
    }

    /// `RING_SIZE`.
    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Why the ring is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// The private indices `(req_cons, rsp_prod_pvt)`.
    pub fn indices(&self) -> (u32, u32) {
        (self.req_cons, self.rsp_prod_pvt)
    }

    /// Requests consumed and not yet answered.
    pub fn pending(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Gives the ring memory back (to unmap it).
    pub fn into_memory(self) -> M {
        self.mem
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
        RingError::Broken(*self.broken.get_or_insert(why))
    }

    /// Breaks the ring because the driver found a request invalid for its protocol.
    pub fn reject(&mut self, why: &'static str) -> RingError {
        self.fail(Broken::Rejected(why))
    }

    /// Reads and validates `req_prod`; returns how many requests may be consumed.
    ///
    /// `RING_REQUEST_PROD_OVERFLOW`: the frontend may publish at most a ring's worth of
    /// requests past the last response; and `req_prod` may not move back behind `req_cons`.
    #[inline]
    fn refresh(&mut self) -> Result<u32, RingError> {
        let rp = self.mem.header().load_u32(REQ_PROD, Ordering::Acquire); // READ_ONCE; rmb()
        let ahead = rp.wrapping_sub(self.rsp_prod_pvt);
        let consumed = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        if ahead > self.size() || ahead < consumed {
            return Err(self.fail(Broken::RequestProdOverflow {
                req_prod: rp,
                rsp_prod_pvt: self.rsp_prod_pvt,
                size: self.size(),
            }));
        }
        self.req_prod_seen = rp;
        Ok(ahead - consumed)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`, with `req_prod` validated.
    pub fn has_unconsumed_requests(&mut self) -> Result<bool, RingError> {
        self.check()?;
        Ok(self.req_cons != self.req_prod_seen || self.refresh()? > 0)
    }

    /// `XEN_RING_NR_UNCONSUMED_REQUESTS`: reads and validates `req_prod` once and returns how
    /// many requests can be taken now. The next that many [`next_request`](Self::next_request)
    /// calls return them without reading `req_prod` again (a consumer loop in the shape of
    /// `rp = req_prod; rmb(); while (req_cons != rp) ...`).
    #[inline]
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        self.check()?;
        self.refresh()
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS` (`more_to_do`): true if requests are waiting; if none
    /// are, sets `req_event = req_cons + 1`, `xen_mb()`, and checks again.
    #[inline]
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.has_unconsumed_requests()? {
            return Ok(true);
        }
        let h = self.mem.header();
        h.store_u32(REQ_EVENT, self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst); // xen_mb()
        Ok(self.refresh()? > 0)
    }

    /// Takes the next published request, copied out of the ring exactly once
    /// (`RING_COPY_REQUEST`), or `Ok(None)` if there is none.
    #[inline]
    pub fn next_request(&mut self) -> Result<Option<P::Request>, RingError> {
        self.check()?;
        if self.req_cons == self.req_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let mut req = P::Request::new_zeroed();
        let off = abi::entry_offset(self.req_cons & self.mask, slot_size::<P>());
        self.mem.read_at(off, req.as_mut_bytes());
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Answers up to `max` published requests in one go, a synchronous backend's loop:
    /// reads and validates `req_prod` once (as [`unconsumed_requests`](Self::unconsumed_requests)),
    /// then for each request copies it out once (`RING_COPY_REQUEST`), calls `f` on it and
    /// writes the response `f` returns into the next response slot (published by the next
    /// [`push_responses`](Self::push_responses)). Returns how many were answered.
    ///
    /// One `Broken` check, one producer-index read and (on contiguous memory) one bounds
    /// check per batch instead of per request.
    #[inline]
    pub fn answer_requests(
        &mut self,
        max: u32,
        mut f: impl FnMut(P::Request) -> P::Response,
    ) -> Result<u32, RingError> {
        self.check()?;
        let n = self.refresh()?.min(max);
        let BackRing {
            mem,
            mask,
            req_cons,
            rsp_prod_pvt,
            ..
        } = self;
        // One loop per kind of memory, so the choice is made once per batch.
        match Entries::<P, M>::new(mem, *mask + 1) {
            Entries::Flat(slots) => answer::<P>(
                n,
                |i| slots.read(i),
                |i, rsp: &P::Response| slots.write(i, rsp),
                req_cons,
                rsp_prod_pvt,
                &mut f,
            ),
            paged => answer::<P>(
                n,
                |i| paged.read(i),
                |i, rsp: &P::Response| paged.write(i, rsp),
                req_cons,
                rsp_prod_pvt,
                &mut f,
            ),
        }
        Ok(n)
    }

    /// Writes the response to the oldest unanswered request into its slot (published by the
    /// next [`push_responses`](Self::push_responses)).
    #[inline]
    pub fn respond(&mut self, rsp: P::Response) -> Result<(), RingError> {
        self.check()?;
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NoRequestPending);
        }
        let off = abi::entry_offset(self.rsp_prod_pvt & self.mask, slot_size::<P>());
        self.mem.write_at(off, rsp.as_bytes());
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, with `old` from a private copy.
    #[inline]
    pub fn push_responses(&mut self) -> Result<Notify, RingError> {
        self.check()?;
        let (old, new) = (self.rsp_published, self.rsp_prod_pvt);
        if old == new {
            return Ok(Notify(false));
        }
        let h = self.mem.header();
        h.store_u32(RSP_PROD, new, Ordering::Release); // xen_wmb(); rsp_prod = new
        fence(Ordering::SeqCst); // xen_mb()
        let event = h.load_u32(RSP_EVENT, Ordering::Relaxed);
        self.rsp_published = new;
        Ok(Notify(new.wrapping_sub(event) < new.wrapping_sub(old)))
    }
}

/// The loop of [`BackRing::answer_requests`] over `n` published requests.
///
/// Indices advance in locals and are stored before `f` runs, so a panic in `f` leaves the
/// ring consistent (the request consumed, no response written for it).
#[inline(always)]
fn answer<P: Protocol>(
    n: u32,
    read: impl Fn(u32) -> P::Request,
    write: impl Fn(u32, &P::Response),
    req_cons: &mut u32,
    rsp_prod_pvt: &mut u32,
    f: &mut impl FnMut(P::Request) -> P::Response,
) {
    let (mut cons, mut prod) = (*req_cons, *rsp_prod_pvt);
    for _ in 0..n {
        let req = read(cons);
        cons = cons.wrapping_add(1);
        *req_cons = cons;
        let rsp = f(req);
        // A response slot is never past the request just consumed: no unconsumed request
        // is overwritten.
        write(prod, &rsp);
        prod = prod.wrapping_add(1);
        *rsp_prod_pvt = prod;
    }
}
