//! Hostile peers acting on the raw shared memory (DESIGN invariant 6; xen-abi.md section 6,
//! J. Gross's 2021 hardening series and XSA-155).
//!
//! Each case must put the ring in `Broken` with a typed error, keep failing afterwards, never
//! panic, and free nothing still in flight (the in-flight values come back from
//! `into_parts`, for the driver to end their grants).
#![cfg(not(loom))]

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use xen_gnttab::shared::Ordering;
use xen_gnttab::{PAGE_SIZE, SharedMem, SharedRegion, Writable};
use xen_ring::abi::{HEADER_SIZE, REQ_PROD, RSP_PROD};
use xen_ring::{BackRing, Broken, FrontMemory, FrontRing, RingError, RingMemory, slot_size};

type Front<P> = FrontRing<P, Arc<SharedRegion>, &'static str>;

fn front<P: xen_ring::Protocol>(pages: usize, start: u32) -> (Front<P>, Arc<SharedRegion>) {
    let mem = Arc::new(SharedRegion::new_zeroed(pages * PAGE_SIZE));
    (FrontRing::new_at(mem.clone(), start).unwrap(), mem)
}

/// The hostile backend's raw writes.
fn put_rsp<P: xen_ring::Protocol>(mem: &SharedRegion, idx: u32, size: u32, rsp: &P::Response) {
    let off = HEADER_SIZE + (idx & (size - 1)) as usize * slot_size::<P>();
    mem.mem().write(off, rsp);
}
fn set_rsp_prod(mem: &SharedRegion, v: u32) {
    mem.mem().store_u32(RSP_PROD, v, Ordering::Release);
}

/// Submits and publishes `values`, returning their IDs.
fn submit_tx(f: &mut Front<NetTx>, values: &[&'static str]) -> Vec<u16> {
    let ids = values
        .iter()
        .map(|v| {
            let l = f.lease().unwrap();
            let id = l.id();
            l.submit(TxReq::default(), v);
            id
        })
        .collect();
    let _ = f.push_requests().unwrap();
    ids
}

/// After breaking: every call fails with the same reason, and `into_parts` hands back
/// exactly `still_in_flight`.
fn assert_stays_broken(mut f: Front<NetTx>, why: Broken, mut still_in_flight: Vec<&'static str>) {
    let e = RingError::Broken(why);
    assert_eq!(f.broken(), Some(why));
    assert_eq!(f.poll_response().unwrap_err(), e);
    assert_eq!(f.final_check_for_responses().unwrap_err(), e);
    assert_eq!(f.has_unconsumed_responses().unwrap_err(), e);
    assert_eq!(f.lease().unwrap_err(), e);
    assert_eq!(f.push_requests().unwrap_err(), e);
    assert_eq!(f.reject("later"), e, "the first reason is kept");
    let (_, mut left) = f.into_parts();
    left.sort();
    still_in_flight.sort();
    assert_eq!(left, still_in_flight, "nothing in flight was freed");
}

#[test]
fn rsp_prod_a_ring_and_one_past_rsp_cons() {
    let (mut f, mem) = front::<NetTx>(1, u32::MAX - 1);
    submit_tx(&mut f, &["a", "b"]);
    let bad = (u32::MAX - 1).wrapping_add(256 + 1); // RING_RESPONSE_PROD_OVERFLOW
    set_rsp_prod(&mem, bad);
    let why = Broken::ResponseProdOverflow {
        rsp_prod: bad,
        rsp_cons: u32::MAX - 1,
        outstanding: 2,
    };
    assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
    assert_stays_broken(f, why, vec!["a", "b"]);
}

#[test]
fn more_responses_than_requests_within_the_ring() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a", "b"]);
    set_rsp_prod(&mem, 3);
    assert_eq!(
        f.final_check_for_responses(),
        Err(RingError::Broken(Broken::ResponseProdOverflow {
            rsp_prod: 3,
            rsp_cons: 0,
            outstanding: 2
        }))
    );
    assert_stays_broken(f, f_broken(3, 0, 2), vec!["a", "b"]);
}

fn f_broken(rsp_prod: u32, rsp_cons: u32, outstanding: u32) -> Broken {
    Broken::ResponseProdOverflow {
        rsp_prod,
        rsp_cons,
        outstanding,
    }
}

#[test]
fn response_before_any_request() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    put_rsp::<NetTx>(&mem, 0, 256, &TxRsp { id: 0, status: 0 });
    set_rsp_prod(&mem, 1);
    assert!(matches!(
        f.has_unconsumed_responses(),
        Err(RingError::Broken(_))
    ));
    assert_stays_broken(f, f_broken(1, 0, 0), vec![]);
}

#[test]
fn response_to_a_request_not_yet_published() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a"]);
    f.lease().unwrap().submit(TxReq::default(), "unpublished");
    set_rsp_prod(&mem, 2);
    assert!(f.poll_response().is_err());
    assert_stays_broken(f, f_broken(2, 0, 1), vec!["a", "unpublished"]);
}

#[test]
fn rsp_prod_moved_backwards() {
    let (mut f, mem) = front::<NetTx>(1, 10);
    submit_tx(&mut f, &["a"]);
    set_rsp_prod(&mem, 9);
    assert!(f.poll_response().is_err());
    assert_stays_broken(f, f_broken(9, 10, 1), vec!["a"]);
}

#[test]
fn id_out_of_range_netif() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a"]);
    put_rsp::<NetTx>(&mem, 0, 256, &TxRsp { id: 256, status: 0 });
    set_rsp_prod(&mem, 1);
    let why = Broken::IdOutOfRange { id: 256, size: 256 };
    assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
    assert_stays_broken(f, why, vec!["a"]);
}

#[test]
fn id_out_of_range_blkif_each_order() {
    for order in 0..=4u32 {
        let pages = 1usize << order;
        let size = 32u32 << order;
        for bad in [u64::from(size), u64::MAX, 1 << 40] {
            let mem = Arc::new(SharedRegion::new_zeroed(pages * PAGE_SIZE));
            let mut f: FrontRing<Blk, _, u8> = FrontRing::new(mem.clone()).unwrap();
            assert_eq!(f.size(), size);
            f.lease().unwrap().submit(BlkReq::default(), 7);
            let _ = f.push_requests().unwrap();
            put_rsp::<Blk>(
                &mem,
                0,
                size,
                &BlkRsp {
                    id: bad,
                    ..Default::default()
                },
            );
            set_rsp_prod(&mem, 1);
            let why = Broken::IdOutOfRange { id: bad, size };
            assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
            assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
            assert_eq!(f.into_parts().1, vec![7]);
        }
    }
}

#[test]
fn unknown_id() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    let ids = submit_tx(&mut f, &["a"]);
    let unknown = if ids[0] == 5 { 6 } else { 5 };
    put_rsp::<NetTx>(
        &mem,
        0,
        256,
        &TxRsp {
            id: unknown,
            status: 0,
        },
    );
    set_rsp_prod(&mem, 1);
    let why = Broken::IdNotInFlight { id: unknown.into() };
    assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
    assert_stays_broken(f, why, vec!["a"]);
}

#[test]
fn duplicate_id_frees_only_the_first() {
    // MSA00: two responses with one ID must not free two requests.
    let (mut f, mem) = front::<NetTx>(1, u32::MAX);
    let ids = submit_tx(&mut f, &["a", "b"]);
    let s = u32::MAX;
    put_rsp::<NetTx>(
        &mem,
        s,
        256,
        &TxRsp {
            id: ids[0],
            status: 0,
        },
    );
    put_rsp::<NetTx>(
        &mem,
        s.wrapping_add(1),
        256,
        &TxRsp {
            id: ids[0],
            status: 0,
        },
    );
    set_rsp_prod(&mem, s.wrapping_add(2));
    let (rsp, v) = f.poll_response().unwrap().unwrap();
    assert_eq!((rsp.id, v), (ids[0], "a"));
    let why = Broken::IdNotInFlight { id: ids[0].into() };
    assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
    assert_stays_broken(f, why, vec!["b"]);
}

#[test]
fn duplicate_id_in_a_batch_breaks_it_after_the_valid_ones() {
    // The batch consumer validates each response as the single one does: the first response
    // is handed over, the duplicate breaks the ring, the third stays unread and in flight.
    let (mut f, mem) = front::<NetTx>(1, u32::MAX - 1);
    let ids = submit_tx(&mut f, &["a", "b", "c"]);
    let s = u32::MAX - 1;
    for (k, id) in [ids[0], ids[0], ids[2]].into_iter().enumerate() {
        put_rsp::<NetTx>(
            &mem,
            s.wrapping_add(k as u32),
            256,
            &TxRsp { id, status: 0 },
        );
    }
    set_rsp_prod(&mem, s.wrapping_add(3));
    let mut got = Vec::new();
    let why = Broken::IdNotInFlight { id: ids[0].into() };
    assert_eq!(
        f.poll_responses(u32::MAX, |rsp, v| got.push((rsp.id, v))),
        Err(RingError::Broken(why))
    );
    assert_eq!(got, vec![(ids[0], "a")]);
    assert_eq!(
        f.poll_responses(1, |_, _| unreachable!()),
        Err(RingError::Broken(why))
    );
    assert_eq!(
        f.submit_batch(1, |_| unreachable!()),
        Err(RingError::Broken(why))
    );
    assert_stays_broken(f, why, vec!["b", "c"]);
}

#[test]
fn batch_rsp_prod_overflow_and_out_of_range_id() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a"]);
    set_rsp_prod(&mem, 2);
    let why = f_broken(2, 0, 1);
    assert_eq!(
        f.poll_responses(u32::MAX, |_, _| unreachable!()),
        Err(RingError::Broken(why))
    );
    assert_stays_broken(f, why, vec!["a"]);

    let (mut f, mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a"]);
    put_rsp::<NetTx>(&mem, 0, 256, &TxRsp { id: 256, status: 0 });
    set_rsp_prod(&mem, 1);
    let why = Broken::IdOutOfRange { id: 256, size: 256 };
    assert_eq!(
        f.poll_responses(u32::MAX, |_, _| unreachable!()),
        Err(RingError::Broken(why))
    );
    assert_stays_broken(f, why, vec!["a"]);
}

#[test]
fn id_already_completed() {
    let (mut f, mem) = front::<NetTx>(1, 0);
    let a = submit_tx(&mut f, &["a"])[0];
    put_rsp::<NetTx>(&mem, 0, 256, &TxRsp { id: a, status: 0 });
    set_rsp_prod(&mem, 1);
    assert_eq!(f.poll_response().unwrap().unwrap().1, "a");
    assert_eq!(f.poll_response(), Ok(None));
    // A new request, then a replay of the completed ID.
    let b = submit_tx(&mut f, &["b"])[0];
    let replay = if a == b { (a + 1) % 256 } else { a };
    put_rsp::<NetTx>(
        &mem,
        1,
        256,
        &TxRsp {
            id: replay,
            status: 0,
        },
    );
    set_rsp_prod(&mem, 2);
    let why = Broken::IdNotInFlight { id: replay.into() };
    assert_eq!(f.final_check_for_responses(), Ok(true));
    assert_eq!(f.poll_response(), Err(RingError::Broken(why)));
    assert_stays_broken(f, why, vec!["b"]);
}

#[test]
fn driver_rejection_breaks_the_ring() {
    let (mut f, _mem) = front::<NetTx>(1, 0);
    submit_tx(&mut f, &["a"]);
    let e = f.reject("wrong operation");
    assert_eq!(e, RingError::Broken(Broken::Rejected("wrong operation")));
    assert_stays_broken(f, Broken::Rejected("wrong operation"), vec!["a"]);
}

#[test]
fn backend_scribbling_req_prod_cannot_steer_notify() {
    // Reference run, then the same with the backend rewriting req_prod before each push.
    for scribble in [None, Some(0u32), Some(5), Some(u32::MAX), Some(0x8000_0000)] {
        let (mut f, mem) = front::<NetTx>(1, 0);
        let mut decisions = Vec::new();
        for batch in [1, 3, 2] {
            for _ in 0..batch {
                f.lease().unwrap().submit(TxReq::default(), "x");
            }
            if let Some(v) = scribble {
                mem.mem().store_u32(REQ_PROD, v, Ordering::Relaxed);
            }
            decisions.push(f.push_requests().unwrap().needed());
            // The backend re-arms to "notify me at the next request" only after the first.
            if decisions.len() == 2 {
                mem.mem().store_u32(4, 5, Ordering::Relaxed);
            }
        }
        assert_eq!(decisions, vec![true, false, true], "scribble {scribble:?}");
    }
}

/// Ring memory that counts the reads of every entry and, like a backend racing the
/// frontend, rewrites an entry right after each read of it.
#[derive(Debug)]
struct Instrumented {
    mem: Arc<SharedRegion>,
    reads: Mutex<BTreeMap<usize, u32>>,
    /// What to write over an entry once it has been read.
    rewrite: Option<TxRsp>,
}

impl RingMemory for Instrumented {
    fn ring_bytes(&self) -> usize {
        self.mem.len()
    }
    fn header(&self) -> SharedMem<'_, Writable> {
        self.mem.mem()
    }
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        self.mem.mem().read_bytes(off, dst);
        *self.reads.lock().unwrap().entry(off).or_default() += 1;
        if let Some(r) = &self.rewrite {
            self.mem.mem().write(off, r);
        }
    }
    fn write_at(&self, off: usize, src: &[u8]) {
        self.mem.mem().write_bytes(off, src)
    }
}
impl FrontMemory for Instrumented {}

#[test]
fn response_rewritten_after_publishing_is_acted_on_once() {
    let mem = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
    // The third request's ID is 2 (IDs are handed out from 0 upwards); the racing backend
    // rewrites each response slot to claim it as soon as the frontend has read the slot.
    let inst = Arc::new(Instrumented {
        mem: mem.clone(),
        reads: Mutex::default(),
        rewrite: Some(TxRsp { id: 2, status: -1 }),
    });
    let mut f: FrontRing<NetTx, _, &str> = FrontRing::new(inst.clone()).unwrap();
    let ids = ["a", "b", "c"].map(|v| {
        let l = f.lease().unwrap();
        let id = l.id();
        l.submit(TxReq::default(), v);
        id
    });
    assert_eq!(ids, [0, 1, 2]);
    let _ = f.push_requests().unwrap();
    // The backend answers `a` and `b` and publishes.
    for (i, id) in ids[..2].iter().enumerate() {
        put_rsp::<NetTx>(
            &mem,
            i as u32,
            256,
            &TxRsp {
                id: *id,
                status: i as i16,
            },
        );
    }
    set_rsp_prod(&mem, 2);
    let mut got = Vec::new();
    while let Some((rsp, v)) = f.poll_response().unwrap() {
        got.push((rsp.id, rsp.status, v));
    }
    assert_eq!(f.final_check_for_responses(), Ok(false));
    // The frontend acted on its copies: `a` and `b`, never the rewritten `c`.
    assert_eq!(got, vec![(0, 0, "a"), (1, 1, "b")]);
    let reads = inst.reads.lock().unwrap().clone();
    assert_eq!(
        reads.keys().copied().collect::<Vec<_>>(),
        vec![HEADER_SIZE, HEADER_SIZE + 12]
    );
    assert!(
        reads.values().all(|&n| n == 1),
        "each response slot read exactly once: {reads:?}"
    );
    // The slots now claim `c` in shared memory, but `c` is still in flight, and a genuine
    // response to it still completes it.
    let mut raw = TxRsp::default();
    mem.mem()
        .read_bytes(HEADER_SIZE, zerocopy::IntoBytes::as_mut_bytes(&mut raw));
    assert_eq!(raw.id, 2);
    assert_eq!(f.in_flight(), 1);
    put_rsp::<NetTx>(&mem, 2, 256, &TxRsp { id: 2, status: 7 });
    set_rsp_prod(&mem, 3);
    let (rsp, v) = f.poll_response().unwrap().unwrap();
    assert_eq!((rsp.status, v), (7, "c"));
    assert!(f.broken().is_none());
}

#[test]
fn backend_reads_each_request_once() {
    let mem = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
    let mut f: FrontRing<NetTx, _, u32> = FrontRing::new(mem.clone()).unwrap();
    let inst = Instrumented {
        mem: mem.clone(),
        reads: Mutex::default(),
        rewrite: None,
    };
    let mut b: BackRing<NetTx, _> = BackRing::attach(&inst).unwrap();
    for round in 0..3u32 {
        for i in 0..200 {
            f.lease().unwrap().submit(
                TxReq {
                    size: i,
                    ..Default::default()
                },
                round,
            );
        }
        let _ = f.push_requests().unwrap();
        if round == 2 {
            // The batch call, entry by entry on memory that is not `contiguous`.
            let n = b
                .answer_requests(u32::MAX, |r| TxRsp {
                    id: r.id,
                    status: 0,
                })
                .unwrap();
            assert_eq!(n, 200);
        } else {
            while let Some(r) = b.next_request().unwrap() {
                b.respond(TxRsp {
                    id: r.id,
                    status: 0,
                })
                .unwrap();
            }
        }
        assert!(!b.final_check_for_requests().unwrap());
        let _ = b.push_responses().unwrap();
        while f.poll_response().unwrap().is_some() {}
    }
    // 600 requests over 256 slots: each read once per use.
    let reads = inst.reads.lock().unwrap();
    assert_eq!(reads.values().sum::<u32>(), 600);
    assert!(reads.values().all(|&n| n == 2 || n == 3));
}

#[test]
fn hostile_frontend_req_prod_overflow_and_backwards() {
    let mem = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
    let mut f: FrontRing<NetTx, _, ()> = FrontRing::new(mem.clone()).unwrap();
    let mut b: BackRing<NetTx, _> = BackRing::attach(mem.clone()).unwrap();
    mem.mem().store_u32(REQ_PROD, 257, Ordering::Release); // RING_REQUEST_PROD_OVERFLOW
    let why = Broken::RequestProdOverflow {
        req_prod: 257,
        rsp_prod_pvt: 0,
        size: 256,
    };
    assert_eq!(b.next_request(), Err(RingError::Broken(why)));
    assert_eq!(b.final_check_for_requests(), Err(RingError::Broken(why)));
    assert_eq!(b.respond(TxRsp::default()), Err(RingError::Broken(why)));
    assert_eq!(b.push_responses(), Err(RingError::Broken(why)));
    assert_eq!(
        b.answer_requests(u32::MAX, |_| unreachable!()),
        Err(RingError::Broken(why))
    );
    // The batch call checks req_prod as the single one does.
    let mut b2: BackRing<NetTx, _> = BackRing::attach(mem.clone()).unwrap();
    assert_eq!(
        b2.answer_requests(u32::MAX, |_| unreachable!()),
        Err(RingError::Broken(why))
    );
    // A full ring (256 unanswered) is fine; going back behind req_cons is not.
    let mut b: BackRing<NetTx, _> = BackRing::attach(mem.clone()).unwrap();
    for _ in 0..256 {
        f.lease().unwrap().submit(TxReq::default(), ());
    }
    let _ = f.push_requests().unwrap();
    for _ in 0..10 {
        b.next_request().unwrap().unwrap();
    }
    mem.mem().store_u32(REQ_PROD, 9, Ordering::Release);
    assert!(
        b.has_unconsumed_requests().is_ok(),
        "10 consumed, cached index still valid"
    );
    for _ in 10..256 {
        b.next_request().unwrap().unwrap();
    }
    assert_eq!(
        b.next_request(),
        Err(RingError::Broken(Broken::RequestProdOverflow {
            req_prod: 9,
            rsp_prod_pvt: 0,
            size: 256
        }))
    );
}

proptest! {
    /// A backend writing garbage anywhere in the ring: the frontend never panics, every value
    /// submitted is either returned with a response (whose ID it was leased under) or still
    /// held in flight, and once broken it stays broken.
    #[test]
    fn garbage_backend(
        start in any::<u32>(),
        writes in proptest::collection::vec((0usize..(64 + 8 * 12), any::<u32>()), 0..40),
        steps in proptest::collection::vec(0u8..4, 1..60),
    ) {
        let mem = Arc::new(SharedRegion::new_zeroed(HEADER_SIZE + 8 * 12));
        let mut f: FrontRing<NetTx, _, u32> = FrontRing::new_at(mem.clone(), start).unwrap();
        let mut w = writes.into_iter();
        let (mut submitted, mut returned) = (0u32, Vec::new());
        let mut leased_ids = BTreeMap::new();
        let mut was_broken = false;
        for s in steps {
            match s {
                0 => if let Ok(l) = f.lease() {
                    leased_ids.insert(submitted, l.id());
                    l.submit(TxReq::default(), submitted);
                    submitted += 1;
                },
                1 => { let _ = f.push_requests(); }
                2 => if let Some((off, v)) = w.next() {
                    let off = off & !3;
                    mem.mem().store_u32(off, v, Ordering::Release);
                },
                _ => match f.poll_response() {
                    Ok(Some((rsp, v))) => {
                        prop_assert_eq!(leased_ids.get(&v), Some(&rsp.id));
                        returned.push(v);
                    }
                    Ok(None) => {}
                    Err(RingError::Broken(_)) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                },
            }
            if was_broken { prop_assert!(f.broken().is_some()) }
            was_broken = f.broken().is_some();
            let _ = f.final_check_for_responses();
        }
        let (_, left) = f.into_parts();
        let mut all: Vec<u32> = returned.into_iter().chain(left).collect();
        all.sort();
        prop_assert_eq!(all, (0..submitted).collect::<Vec<_>>());
    }
}
