//! Shared rings between two simulated domains, and hostile backends that break them.
//!
//! The frontend grants its ring page (`Granted` from `front.grants()`) and builds a
//! `FrontRing` over it; the backend maps that grant with `ForeignMap` (`back.mapper()`) and
//! attaches a `BackRing`. Each request carries an in-flight value the ring owns until its
//! response: here a data page granted read-only to the backend, as a netfront's packet
//! buffer.
//!
//! The hostile cases (DESIGN invariant 6, issue 3 item 5): a backend that keeps its mapping
//! of the ring page and writes the page directly (`Hostile::map_and_hold`). Each case asserts
//! the typed `Broken` reason, that the ring keeps failing, that every in-flight value comes
//! back from `into_parts` with its grant still live (nothing freed), and that the ring page's
//! grant cannot be ended while the backend maps it: it goes to the reclaim queue and comes
//! back only once the backend lets go.

use xen_gnttab::abi::GTF_PERMIT_ACCESS;
use xen_gnttab::shared::Ordering;
use xen_gnttab::{
    ForeignMap, ForeignRef, GrantRef, Granted, Grantor, ReadOnly, SharedMem, Writable,
};
use xen_ring::abi::{HEADER_SIZE, REQ_PROD, RSP_PROD};
use xen_ring::{BackRing, Broken, FrontRing, Protocol, RingError, slot_size};
use xen_sim::{Domain, HeldMapping, Host, SimGrants};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// netif tx request (12 bytes, `id` at 8).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
struct TxReq {
    gref: u32,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
}

/// netif tx response (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
struct TxRsp {
    id: u16,
    status: i16,
}

enum NetTx {}
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

/// One page of netif tx entries: 256 slots.
const SIZE: u32 = 256;

/// A data page granted read-only to the backend: what a request hands the ring.
type Buffer = Granted<SimGrants, ReadOnly>;
type Front = FrontRing<NetTx, Granted<SimGrants, Writable>, Buffer>;

struct Setup {
    _host: Host,
    front: Domain,
    back: Domain,
    ring: Front,
}

/// A frontend domain with an initialised ring in a page granted to the backend domain.
fn setup() -> Setup {
    let host = Host::new();
    let front = host.create_domain("frontend");
    let back = host.create_domain("backend");
    let gt = front.grants();
    let page = Granted::<_, Writable>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
    let ring = FrontRing::new(page).map_err(|(_, e)| e).unwrap();
    assert_eq!(ring.size(), SIZE);
    Setup {
        _host: host,
        front,
        back,
        ring,
    }
}

impl Setup {
    fn ring_ref(&self) -> ForeignRef {
        ForeignRef {
            domid: self.front.domid(),
            gref: self.ring.memory().gref(),
        }
    }

    /// Submits one request per tag, each with a data page (holding the tag) granted to the
    /// backend, and publishes them. Returns the IDs and the data grants' refs.
    fn submit(&mut self, tags: &[&[u8]]) -> Vec<(u16, GrantRef)> {
        let gt = self.front.grants();
        let sent = tags
            .iter()
            .map(|tag| {
                let buf =
                    Granted::<_, ReadOnly>::new(gt, gt.alloc_page().unwrap(), self.back.domid())
                        .unwrap();
                buf.mem().write_bytes(0, tag);
                let gref = buf.gref();
                let lease = self.ring.lease().unwrap();
                let id = lease.id();
                let req = TxReq {
                    gref: gref.0,
                    size: tag.len() as u16,
                    ..TxReq::default()
                };
                lease.submit(req, buf);
                (id, gref)
            })
            .collect();
        let _ = self.ring.push_requests().unwrap();
        sent
    }

    /// A backend that keeps its writable mapping of the ring page whatever happens.
    fn hostile_backend(&self) -> HeldMapping {
        let r = self.ring_ref();
        self.back
            .hostile()
            .map_and_hold(r.domid, r.gref, false)
            .unwrap()
    }

    fn is_granted(&self, gref: GrantRef) -> bool {
        let (flags, domid) = self.front.entry_flags(gref).unwrap();
        flags & GTF_PERMIT_ACCESS != 0 && domid == self.back.domid().0
    }
}

/// The hostile backend's raw writes into the mapped ring page.
fn put_rsp(mem: SharedMem<'_, Writable>, idx: u32, rsp: TxRsp) {
    let off = HEADER_SIZE + (idx & (SIZE - 1)) as usize * slot_size::<NetTx>();
    mem.write(off, &rsp);
}
fn set_rsp_prod(mem: SharedMem<'_, Writable>, v: u32) {
    mem.store_u32(RSP_PROD, v, Ordering::Release);
}
fn ok(id: u16) -> TxRsp {
    TxRsp { id, status: 0 }
}

/// After a break: every call fails with the first reason; `into_parts` gives back exactly the
/// buffers still in flight, each still granted (never freed); the ring page cannot be ended
/// while the hostile backend maps it, waits in the reclaim queue, and comes back only after
/// the backend lets go.
fn assert_broken_and_nothing_freed(
    s: Setup,
    held: HeldMapping,
    why: Broken,
    still_in_flight: &[GrantRef],
) {
    let Setup {
        _host,
        front,
        back,
        mut ring,
    } = s;
    let e = RingError::Broken(why);
    assert_eq!(ring.broken(), Some(why));
    assert_eq!(ring.poll_response().unwrap_err(), e);
    assert_eq!(ring.final_check_for_responses().unwrap_err(), e);
    assert_eq!(ring.lease().unwrap_err(), e);
    assert_eq!(ring.push_requests().unwrap_err(), e);
    assert_eq!(ring.reject("later"), e, "the first reason is kept");

    let (page, buffers) = ring.into_parts();
    let mut got: Vec<u32> = buffers.iter().map(|b| b.gref().0).collect();
    let mut want: Vec<u32> = still_in_flight.iter().map(|g| g.0).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "every in-flight buffer comes back, none freed");
    for b in &buffers {
        let (flags, domid) = front.entry_flags(b.gref()).unwrap();
        assert!(
            flags & GTF_PERMIT_ACCESS != 0 && domid == back.domid().0,
            "the buffer's grant is still live"
        );
    }
    // Nobody mapped the buffers: the driver may end them now.
    for b in buffers {
        b.end_access().expect("not mapped by anyone");
    }

    let gt = front.grants();
    let ring_gref = page.gref();
    let busy = page
        .end_access()
        .expect_err("the hostile backend still maps the ring page");
    busy.into_granted().into_reclaim();
    assert_eq!(gt.reclaim().still_busy, 1, "never freed while mapped");
    let (flags, _) = front.entry_flags(ring_gref).unwrap();
    assert_ne!(flags & GTF_PERMIT_ACCESS, 0, "the ring grant is still live");
    back.hostile().release(held).unwrap();
    let r = gt.reclaim();
    assert_eq!((r.ended.len(), r.still_busy), (1, 0));
    assert_eq!(front.entry_flags(ring_gref).unwrap().0, 0);
}

#[test]
fn a_normal_exchange_end_to_end() {
    let mut s = setup();
    let sent = s.submit(&[b"one", b"two", b"three"]);
    assert_eq!(s.ring.in_flight(), 3);

    // The backend maps the ring page and attaches; it reads each request and the data page
    // its grant names, and answers.
    let map = ForeignMap::<_, Writable>::map(s.back.mapper(), s.ring_ref()).unwrap();
    let mut back = BackRing::<NetTx, _>::attach(map)
        .map_err(|(_, e)| e)
        .unwrap();
    assert!(back.final_check_for_requests().unwrap());
    let mut seen = Vec::new();
    while let Some(req) = back.next_request().unwrap() {
        let data = ForeignMap::<_, ReadOnly>::map(
            s.back.mapper(),
            ForeignRef {
                domid: s.front.domid(),
                gref: GrantRef(req.gref),
            },
        )
        .unwrap();
        let mut buf = vec![0u8; req.size.into()];
        data.mem().read_bytes(0, &mut buf);
        data.unmap().unwrap();
        seen.push((req.id, buf));
        back.respond(ok(req.id)).unwrap();
    }
    let expected: Vec<(u16, Vec<u8>)> = sent
        .iter()
        .zip([&b"one"[..], b"two", b"three"])
        .map(|(&(id, _), tag)| (id, tag.to_vec()))
        .collect();
    assert_eq!(seen, expected);
    assert!(
        back.push_responses().unwrap().needed(),
        "the frontend asked to hear of its first response"
    );
    assert!(!back.final_check_for_requests().unwrap());

    // The frontend gets each buffer back with its response, and may end its grant.
    let mut back_again = Vec::new();
    while let Some((rsp, buf)) = s.ring.poll_response().unwrap() {
        assert_eq!(rsp.status, 0);
        assert!(s.is_granted(buf.gref()));
        back_again.push((rsp.id, buf.gref()));
        buf.end_access().expect("the backend unmapped it");
    }
    assert_eq!(back_again, sent);
    assert_eq!(s.ring.in_flight(), 0);
    assert_eq!(s.ring.free_requests(), SIZE);
    assert!(!s.ring.final_check_for_responses().unwrap());

    // Teardown: the backend unmaps, then the frontend ends the ring grant.
    back.into_memory().unmap().unwrap();
    let (page, left) = s.ring.into_parts();
    assert!(left.is_empty());
    page.end_access().expect("unmapped");
}

#[test]
fn rsp_prod_beyond_the_ring() {
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    let (_, rsp_cons) = s.ring.indices();
    let bad = rsp_cons.wrapping_add(SIZE + 1); // RING_RESPONSE_PROD_OVERFLOW
    set_rsp_prod(mem, bad);
    let why = Broken::ResponseProdOverflow {
        rsp_prod: bad,
        rsp_cons,
        outstanding: 2,
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    let grefs: Vec<GrantRef> = sent.iter().map(|&(_, g)| g).collect();
    assert_broken_and_nothing_freed(s, held, why, &grefs);
}

#[test]
fn more_responses_than_requests_published() {
    // Within a ring's worth, but answering requests that were never published.
    let mut s = setup();
    let sent = s.submit(&[b"a"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    put_rsp(mem, 0, ok(sent[0].0));
    put_rsp(mem, 1, ok(sent[0].0));
    set_rsp_prod(mem, 2);
    let why = Broken::ResponseProdOverflow {
        rsp_prod: 2,
        rsp_cons: 0,
        outstanding: 1,
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    assert_broken_and_nothing_freed(s, held, why, &[sent[0].1]);
}

#[test]
fn response_id_out_of_range() {
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    put_rsp(mem, 0, ok(SIZE as u16)); // one past the last ID
    set_rsp_prod(mem, 1);
    let why = Broken::IdOutOfRange {
        id: SIZE.into(),
        size: SIZE,
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    let grefs: Vec<GrantRef> = sent.iter().map(|&(_, g)| g).collect();
    assert_broken_and_nothing_freed(s, held, why, &grefs);
}

#[test]
fn response_id_never_leased() {
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    let unknown = (0..SIZE as u16)
        .find(|id| sent.iter().all(|&(s, _)| s != *id))
        .unwrap();
    put_rsp(mem, 0, ok(unknown));
    set_rsp_prod(mem, 1);
    let why = Broken::IdNotInFlight { id: unknown.into() };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    let grefs: Vec<GrantRef> = sent.iter().map(|&(_, g)| g).collect();
    assert_broken_and_nothing_freed(s, held, why, &grefs);
}

#[test]
fn duplicate_response_id() {
    // The MSA00 shape: two responses carry one ID. The first completes its request; the
    // second must not free the other request's buffer.
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    put_rsp(mem, 0, ok(sent[0].0));
    put_rsp(mem, 1, ok(sent[0].0));
    set_rsp_prod(mem, 2);
    let (rsp, buf) = s.ring.poll_response().unwrap().unwrap();
    assert_eq!((rsp.id, buf.gref()), sent[0]);
    let why = Broken::IdNotInFlight {
        id: sent[0].0.into(),
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    // The first buffer was legitimately answered: it is the driver's again. The backend never
    // mapped it, so its grant ends.
    buf.end_access().expect("answered and unmapped");
    assert_broken_and_nothing_freed(s, held, why, &[sent[1].1]);
}

#[test]
fn response_for_an_id_already_completed() {
    // A response replayed after its request completed: the ID is free (not leased again), so
    // nothing is in flight under it.
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    put_rsp(mem, 0, ok(sent[0].0));
    set_rsp_prod(mem, 1);
    let (_, buf) = s.ring.poll_response().unwrap().unwrap();
    buf.end_access().unwrap();
    assert!(s.ring.poll_response().unwrap().is_none());
    // Later, the same response again.
    put_rsp(mem, 1, ok(sent[0].0));
    set_rsp_prod(mem, 2);
    let why = Broken::IdNotInFlight {
        id: sent[0].0.into(),
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    assert_broken_and_nothing_freed(s, held, why, &[sent[1].1]);
}

#[test]
fn rewriting_a_response_after_publishing_it() {
    // XSA-155 shape: the backend publishes a response, then rewrites the slot (another ID,
    // another status). The frontend acts on its one copy: the rewrite completes nothing and
    // frees nothing; the rewritten slot is never read again.
    let mut s = setup();
    let sent = s.submit(&[b"a", b"b"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    put_rsp(mem, 0, ok(sent[0].0));
    set_rsp_prod(mem, 1);
    let (rsp, buf) = s.ring.poll_response().unwrap().unwrap();
    put_rsp(
        mem,
        0,
        TxRsp {
            id: sent[1].0,
            status: -1,
        },
    );
    assert_eq!(rsp, ok(sent[0].0), "the copy taken is the one acted on");
    assert_eq!(buf.gref(), sent[0].1);
    assert!(s.ring.poll_response().unwrap().is_none());
    assert!(!s.ring.final_check_for_responses().unwrap());
    assert_eq!(
        s.ring.in_flight(),
        1,
        "the second request is still in flight"
    );
    buf.end_access().unwrap();

    // The second request is answered properly at the next index; then the backend replays
    // the rewritten slot 0 by moving rsp_prod a whole ring on: an overflow.
    put_rsp(mem, 1, ok(sent[1].0));
    set_rsp_prod(mem, 2);
    let (rsp, buf) = s.ring.poll_response().unwrap().unwrap();
    assert_eq!((rsp.id, buf.gref()), sent[1]);
    buf.end_access().unwrap();
    let third = s.submit(&[b"c"]);
    set_rsp_prod(mem, 2 + SIZE);
    let why = Broken::ResponseProdOverflow {
        rsp_prod: 2 + SIZE,
        rsp_cons: 2,
        outstanding: 1,
    };
    assert_eq!(s.ring.poll_response().unwrap_err(), RingError::Broken(why));
    assert_broken_and_nothing_freed(s, held, why, &[third[0].1]);
}

#[test]
fn the_backend_cannot_initialise_nor_steer_the_frontend() {
    // A backend's attach reads nothing but rsp_prod and writes nothing; a hostile write of
    // req_prod is ignored by the frontend (it keeps its own copy of what it published).
    let mut s = setup();
    let sent = s.submit(&[b"a"]);
    let held = s.hostile_backend();
    let mem = held.mem().unwrap();
    let before: Vec<u32> = (0..16)
        .map(|w| mem.load_u32(w * 4, Ordering::Relaxed))
        .collect();
    let map = ForeignMap::<_, Writable>::map(s.back.mapper(), s.ring_ref()).unwrap();
    let back = BackRing::<NetTx, _>::attach(map)
        .map_err(|(_, e)| e)
        .unwrap();
    let after: Vec<u32> = (0..16)
        .map(|w| mem.load_u32(w * 4, Ordering::Relaxed))
        .collect();
    assert_eq!(before, after, "attaching wrote nothing");
    back.into_memory().unmap().unwrap();

    mem.store_u32(REQ_PROD, 1000, Ordering::Relaxed);
    let second = s.submit(&[b"b"]);
    // The push stored its own index (2), not 1000 + 1, and the notify decision used the
    // private copy of the last published index.
    assert_eq!(mem.load_u32(REQ_PROD, Ordering::Acquire), 2);
    put_rsp(mem, 0, ok(sent[0].0));
    put_rsp(mem, 1, ok(second[0].0));
    set_rsp_prod(mem, 2);
    let mut done = 0;
    while let Some((_, buf)) = s.ring.poll_response().unwrap() {
        buf.end_access().unwrap();
        done += 1;
    }
    assert_eq!(done, 2);
    assert_eq!(s.ring.broken(), None);
    s.back.hostile().release(held).unwrap();
    let (page, left) = s.ring.into_parts();
    assert!(left.is_empty());
    page.end_access().expect("released");
}
