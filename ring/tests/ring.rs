//! Front and back rings against each other: the happy paths, accounting, notification
//! decisions, wraparound, multi-page rings, and a property test against a model.
#![cfg(not(loom))]

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use xen_gnttab::{Domid, Granted, Grantor, PAGE_SIZE, SharedRegion, Writable, local::LocalTable};
use xen_ring::{
    BackRing, FrontRing, LayoutError, PageRing, RingError, abi::ring_size_pages, shared_indices,
};

type Front<P, T> = FrontRing<P, Arc<SharedRegion>, T>;
type Back<P> = BackRing<P, Arc<SharedRegion>>;

fn pair<P: xen_ring::Protocol, T>(bytes: usize, start: u32) -> (Front<P, T>, Back<P>) {
    let mem = Arc::new(SharedRegion::new_zeroed(bytes));
    let front = FrontRing::new_at(mem.clone(), start)
        .map_err(|(_, e)| e)
        .unwrap();
    let back = BackRing::attach(mem).map_err(|(_, e)| e).unwrap();
    (front, back)
}

/// The backend answers every published request, echoing the ID, status = payload.
fn answer_all(back: &mut Back<NetTx>) -> u32 {
    let mut n = 0;
    while let Some(req) = back.next_request().unwrap() {
        back.respond(TxRsp {
            id: req.id,
            status: req.size as i16,
        })
        .unwrap();
        n += 1;
    }
    n
}

#[test]
fn init_writes_shared_ring_init_and_zeroes_entries() {
    let mem = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
    mem.mem().fill(0, PAGE_SIZE, 0xa5);
    let front: Front<NetTx, ()> = FrontRing::new(mem.clone()).unwrap();
    assert_eq!(shared_indices(&mem), (0, 1, 0, 1));
    let mut rest = vec![0u8; 64 + 256 * 12 - 16];
    mem.mem().read_bytes(16, &mut rest);
    assert!(
        rest.iter().all(|&b| b == 0),
        "header pad and entries zeroed (XSA-403)"
    );
    assert_eq!(front.size(), 256);
    assert_eq!(front.free_requests(), 256);
}

#[test]
fn backend_attach_writes_nothing() {
    let mem = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
    mem.mem().fill(0, PAGE_SIZE, 0x5a);
    let before: Vec<u8> = (0..PAGE_SIZE)
        .map(|i| mem.mem().load_u8(i, xen_gnttab::shared::Ordering::Relaxed))
        .collect();
    let back: Back<NetTx> = BackRing::attach(mem.clone()).unwrap();
    let after: Vec<u8> = (0..PAGE_SIZE)
        .map(|i| mem.mem().load_u8(i, xen_gnttab::shared::Ordering::Relaxed))
        .collect();
    assert_eq!(before, after);
    // It starts at whatever rsp_prod says.
    assert_eq!(back.indices(), (0x5a5a_5a5a, 0x5a5a_5a5a));
}

#[test]
fn round_trip_returns_in_flight_values_and_frees_ids_only_then() {
    let (mut front, mut back) = pair::<NetTx, String>(PAGE_SIZE, 0);
    let mut ids = BTreeSet::new();
    for i in 0..5u16 {
        let lease = front.lease().unwrap();
        assert!(ids.insert(lease.id()), "IDs in flight are unique");
        lease.submit(
            TxReq {
                size: i,
                id: 999,
                ..Default::default()
            },
            format!("buf{i}"),
        );
    }
    assert_eq!(
        (
            front.free_requests(),
            front.in_flight(),
            front.unpublished()
        ),
        (251, 5, 5)
    );
    assert!(front.push_requests().unwrap().needed());
    assert_eq!(front.unpublished(), 0);
    // The ring wrote its own IDs, not the caller's 999.
    let mut reqs = Vec::new();
    while let Some(r) = back.next_request().unwrap() {
        reqs.push(r);
    }
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|r| ids.contains(&r.id)));
    // Answer out of order.
    for r in reqs.iter().rev() {
        back.respond(TxRsp {
            id: r.id,
            status: r.size as i16,
        })
        .unwrap();
    }
    assert_eq!(
        back.respond(TxRsp::default()),
        Err(RingError::NoRequestPending)
    );
    assert!(back.push_responses().unwrap().needed());
    assert_eq!(
        front.free_requests(),
        251,
        "nothing freed before the responses are consumed"
    );
    let mut got = Vec::new();
    while let Some((rsp, buf)) = front.poll_response().unwrap() {
        assert_eq!(buf, format!("buf{}", rsp.status));
        got.push(rsp.status);
    }
    assert_eq!(got, vec![4, 3, 2, 1, 0]);
    assert_eq!((front.free_requests(), front.in_flight()), (256, 0));
    assert!(!front.final_check_for_responses().unwrap());
    let (_, rest) = front.into_parts();
    assert!(rest.is_empty());
}

#[test]
fn unconsumed_counts_snapshot_the_producer_index() {
    let (mut front, mut back) = pair::<NetTx, u32>(PAGE_SIZE, u32::MAX - 2);
    assert_eq!(back.unconsumed_requests().unwrap(), 0);
    for v in 0..5 {
        front.lease().unwrap().submit(TxReq::default(), v);
    }
    assert_eq!(back.unconsumed_requests().unwrap(), 0, "not published yet");
    let _ = front.push_requests().unwrap();
    assert_eq!(back.unconsumed_requests().unwrap(), 5);
    for _ in 0..2 {
        let req = back.next_request().unwrap().unwrap();
        back.respond(TxRsp {
            id: req.id,
            status: 0,
        })
        .unwrap();
    }
    assert_eq!(back.unconsumed_requests().unwrap(), 3);
    assert_eq!(front.unconsumed_responses().unwrap(), 0, "not pushed yet");
    let _ = back.push_responses().unwrap();
    assert_eq!(front.unconsumed_responses().unwrap(), 2);
    assert!(front.poll_response().unwrap().is_some());
    assert_eq!(front.unconsumed_responses().unwrap(), 1);
    assert_eq!(answer_all(&mut back), 3);
    let _ = back.push_responses().unwrap();
    assert_eq!(front.unconsumed_responses().unwrap(), 4);
    assert_eq!(back.unconsumed_requests().unwrap(), 0);
}

#[test]
fn full_ring_refuses_leases_and_dropped_lease_returns_its_id() {
    let (mut front, mut back) = pair::<Tiny, u32>(tiny_bytes(4), 0);
    assert_eq!(front.size(), 4);
    let dropped = front.lease().unwrap();
    let dropped_id = dropped.id();
    drop(dropped);
    assert_eq!(front.free_requests(), 4);
    assert_eq!(
        front.lease().unwrap().id(),
        dropped_id,
        "a dropped lease goes back"
    );
    for v in 0..4 {
        front.lease().unwrap().submit(Small::default(), v);
    }
    assert!(matches!(front.lease(), Err(RingError::Full)));
    assert_eq!(front.free_requests(), 0);
    let _ = front.push_requests().unwrap();
    let req = back.next_request().unwrap().unwrap();
    back.respond(req).unwrap();
    let _ = back.push_responses().unwrap();
    // Still full until the response is consumed.
    assert!(matches!(front.lease(), Err(RingError::Full)));
    let (rsp, _) = front.poll_response().unwrap().unwrap();
    assert_eq!(front.lease().unwrap().id(), rsp.id);
}

#[test]
fn notify_follows_the_event_thresholds() {
    let (mut front, mut back) = pair::<NetTx, ()>(PAGE_SIZE, 0);
    // req_event = 1: the first request notifies, the next ones do not until the backend
    // asks again.
    front.lease().unwrap().submit(TxReq::default(), ());
    assert!(front.push_requests().unwrap().needed());
    front.lease().unwrap().submit(TxReq::default(), ());
    assert!(!front.push_requests().unwrap().needed());
    assert!(
        !front.push_requests().unwrap().needed(),
        "empty push never notifies"
    );
    assert_eq!(answer_all(&mut back), 2);
    // The backend ran out of work and re-armed: req_event = req_cons + 1 = 3.
    assert!(!back.final_check_for_requests().unwrap());
    assert_eq!(shared_indices(back.memory()).1, 3);
    front.lease().unwrap().submit(TxReq::default(), ());
    front.lease().unwrap().submit(TxReq::default(), ());
    assert!(
        front.push_requests().unwrap().needed(),
        "a batch crossing req_event notifies"
    );
    // Responses: rsp_event = 1, the first push notifies; later ones only after re-arming.
    assert!(back.push_responses().unwrap().needed());
    assert!(
        back.final_check_for_requests().unwrap(),
        "two more requests wait"
    );
    assert_eq!(answer_all(&mut back), 2);
    assert!(
        !back.push_responses().unwrap().needed(),
        "frontend has not re-armed"
    );
    let mut n = 0;
    while front.poll_response().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    assert!(!front.final_check_for_responses().unwrap());
    assert_eq!(
        shared_indices(front.memory()).3,
        5,
        "rsp_event = rsp_cons + 1"
    );
    front.lease().unwrap().submit(TxReq::default(), ());
    let _ = front.push_requests().unwrap();
    answer_all(&mut back);
    assert!(back.push_responses().unwrap().needed());
}

#[test]
fn final_check_sees_work_published_before_it() {
    let (mut front, mut back) = pair::<NetTx, ()>(PAGE_SIZE, 7);
    assert!(!back.final_check_for_requests().unwrap());
    front.lease().unwrap().submit(TxReq::default(), ());
    assert!(front.push_requests().unwrap().needed());
    assert!(back.final_check_for_requests().unwrap());
    answer_all(&mut back);
    assert!(!back.final_check_for_requests().unwrap());
    assert!(!front.final_check_for_responses().unwrap());
    assert!(back.push_responses().unwrap().needed());
    assert!(front.final_check_for_responses().unwrap());
}

#[test]
fn indices_wrap_across_2_pow_32() {
    let (mut front, mut back) = pair::<NetTx, u64>(PAGE_SIZE, u32::MAX - 100);
    let mut next = 0u64;
    let mut expect = VecDeque::new();
    for _round in 0..10 {
        for _ in 0..37 {
            front.lease().unwrap().submit(
                TxReq {
                    size: (next % 1000) as u16,
                    ..Default::default()
                },
                next,
            );
            expect.push_back(next);
            next += 1;
        }
        let _ = front.push_requests().unwrap();
        answer_all(&mut back);
        let _ = back.push_responses().unwrap();
        while let Some((rsp, v)) = front.poll_response().unwrap() {
            assert_eq!(Some(v), expect.pop_front());
            assert_eq!(rsp.status as u64, v % 1000);
        }
    }
    assert!(expect.is_empty());
    let (prod, cons) = front.indices();
    assert_eq!(prod, cons);
    assert!(prod < 1000, "indices wrapped: {prod:#x}");
}

#[test]
fn blkif_ring_over_separate_pages_with_straddling_entries() {
    let table = LocalTable::new_local(Domid(1), 64);
    for order in 0..=4u32 {
        let pages = 1usize << order;
        let granted = Granted::<_, Writable>::new_many(
            &table,
            (0..pages).map(|_| table.alloc_page().unwrap()).collect(),
            Domid(0),
        )
        .map_err(|(_, e)| e)
        .unwrap();
        let ring = PageRing::new(granted.iter().collect())
            .map_err(|(_, e)| e)
            .unwrap();
        let mut front: FrontRing<Blk, _, u64> = FrontRing::new_at(ring, u32::MAX - 3).unwrap();
        assert_eq!(Some(front.size()), ring_size_pages(pages, 112));
        assert_eq!(front.size(), 32 << order);
        // The backend maps the same pages: here, views of the granted memory.
        let views: Vec<_> = granted.iter().map(|g| g.mem()).collect();
        let mut back: BackRing<Blk, _> = BackRing::attach(PageRing::new(views).unwrap()).unwrap();
        let size = front.size() as u64;
        for k in 0..(3 * size) {
            let mut req = common::BlkReq {
                sector: k * 8,
                ..Default::default()
            };
            req.seg = [k; 11];
            front.lease().unwrap().submit(req, k);
            let _ = front.push_requests().unwrap();
            let got = back.next_request().unwrap().unwrap();
            assert_eq!(
                (got.sector, got.seg),
                (k * 8, [k; 11]),
                "entry {k} intact across pages"
            );
            back.respond(common::BlkRsp {
                id: got.id,
                status: 0,
                operation: 1,
                ..Default::default()
            })
            .unwrap();
            let _ = back.push_responses().unwrap();
            let (_, v) = front.poll_response().unwrap().unwrap();
            assert_eq!(v, k);
        }
        // The batch calls: a whole ring's worth at a time, through the same pages (a single
        // page is contiguous and takes the slot view; more pages go entry by entry).
        for round in 0..3u64 {
            let base = 1000 * (round + 1);
            let sent = front
                .submit_batch(u32::MAX, |k| {
                    let k = base + u64::from(k);
                    let mut req = common::BlkReq {
                        sector: k * 8,
                        ..Default::default()
                    };
                    req.seg = [k; 11];
                    (req, k)
                })
                .unwrap();
            assert_eq!(u64::from(sent), size);
            assert_eq!(
                front.submit_batch(1, |_| unreachable!()),
                Ok(0),
                "ring full"
            );
            let _ = front.push_requests().unwrap();
            let answered = back
                .answer_requests(u32::MAX, |got| {
                    let k = got.sector / 8;
                    assert_eq!(got.seg, [k; 11], "entry {k} intact across pages");
                    common::BlkRsp {
                        id: got.id,
                        operation: 1,
                        ..Default::default()
                    }
                })
                .unwrap();
            assert_eq!(u64::from(answered), size);
            let _ = back.push_responses().unwrap();
            let mut values = Vec::new();
            let taken = front
                .poll_responses(u32::MAX, |_, v| values.push(v))
                .unwrap();
            assert_eq!(u64::from(taken), size);
            values.sort_unstable();
            assert_eq!(values, (base..base + size).collect::<Vec<_>>());
        }
        drop(back);
        let (ring, left) = front.into_parts();
        assert!(left.is_empty());
        assert_eq!(ring.pages().len(), pages);
        drop(ring);
        for g in granted {
            g.end_access().map_err(|_| "still mapped").unwrap();
        }
    }
}

#[test]
fn layout_errors() {
    let small = Arc::new(SharedRegion::new_zeroed(64 + 8));
    let err = FrontRing::<NetTx, _, ()>::new(small).unwrap_err().1;
    assert_eq!(
        err,
        LayoutError::TooSmall {
            bytes: 72,
            slot: 12
        }
    );
    // 1 MiB of 4-byte entries: 2^18 slots, more than u16 IDs can name.
    let big = Arc::new(SharedRegion::new_zeroed(1 << 20));
    let err = FrontRing::<Tiny, _, ()>::new(big.clone()).unwrap_err().1;
    assert_eq!(err, LayoutError::IdTooNarrow { size: 1 << 17 });
    assert!(BackRing::<Tiny, _>::attach(big).is_err());
    // u64 IDs have no such limit.
    assert!(FrontRing::<Blk, _, ()>::new(Arc::new(SharedRegion::new_zeroed(1 << 20))).is_ok());
}

// ---- property test against a model ----

#[derive(Debug, Clone)]
enum Op {
    /// Front submits this many requests (as many as fit).
    Submit(u8),
    /// Front drops a lease unused.
    DropLease,
    /// Front publishes.
    Push,
    /// Back consumes up to this many requests.
    Consume(u8),
    /// Back answers up to this many of its consumed requests, picking the one at this
    /// position of its queue (so out of order).
    Respond(u8, u8),
    /// Back publishes.
    PushResponses,
    /// Front consumes up to this many responses.
    Poll(u8),
    /// Front submits up to this many in one `submit_batch`.
    SubmitBatch(u8),
    /// Back answers up to this many newly published requests in one `answer_requests`.
    AnswerBatch(u8),
    /// Front takes up to this many responses in one `poll_responses`.
    PollBatch(u8),
    /// Front final check.
    FinalFront,
    /// Back final check.
    FinalBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..10).prop_map(Op::Submit),
        Just(Op::DropLease),
        Just(Op::Push),
        (1u8..10).prop_map(Op::Consume),
        (1u8..10, any::<u8>()).prop_map(|(n, p)| Op::Respond(n, p)),
        Just(Op::PushResponses),
        (1u8..10).prop_map(Op::Poll),
        (0u8..40).prop_map(Op::SubmitBatch),
        (0u8..40).prop_map(Op::AnswerBatch),
        (0u8..40).prop_map(Op::PollBatch),
        Just(Op::FinalFront),
        Just(Op::FinalBack),
    ]
}

/// The backend saw request `r`: if it was submitted in a batch, learn its ID (which must be
/// in range and not in flight already); then it must carry the value submitted with its ID.
fn bind(
    in_flight: &mut BTreeMap<u16, u32>,
    pending: &mut BTreeSet<u32>,
    n: usize,
    r: &Small,
) -> Result<(), TestCaseError> {
    if let Some(v) = pending.take(&u32::from(r.val)) {
        prop_assert!((r.id as usize) < n);
        prop_assert!(!in_flight.contains_key(&r.id), "ID {} leased twice", r.id);
        in_flight.insert(r.id, v);
    }
    prop_assert_eq!(in_flight.get(&r.id).map(|v| *v as u16), Some(r.val));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random interleavings of both ends, indices starting within 64 of 2^32 so every run
    /// wraps. The model: which values are in flight under which ID, which requests the
    /// backend saw, published counts. Checks uniqueness of IDs, that each response hands back
    /// exactly the value submitted with its ID, RING_FREE_REQUESTS, and that nothing is lost.
    #[test]
    fn model(start_back in 0u32..64, size_log in 1u32..5, ops in proptest::collection::vec(op(), 1..120)) {
        let start = u32::MAX - start_back;
        let n = 1usize << size_log;
        let (mut front, mut back) = pair::<Tiny, u32>(tiny_bytes(n), start);
        let mut next_val = 0u32;
        // model state
        let mut in_flight: BTreeMap<u16, u32> = BTreeMap::new();  // id -> value
        let mut published = 0u32;     // requests published not yet consumed by back
        let mut unpublished = 0u32;
        let mut back_queue: Vec<Small> = Vec::new(); // consumed, unanswered
        let mut answered_unpub = 0u32;
        let mut rsp_published = 0u32;  // responses published not yet polled
        let mut completed = 0u32;
        // Values submitted by `submit_batch`, whose IDs the model learns from the backend.
        let mut pending_batch: BTreeSet<u32> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Submit(k) => for _ in 0..k {
                    match front.lease() {
                        Ok(lease) => {
                            let id = lease.id();
                            prop_assert!(!in_flight.contains_key(&id), "ID {id} leased twice");
                            prop_assert!((id as usize) < n);
                            lease.submit(Small { id: 0xffff, val: next_val as u16 }, next_val);
                            in_flight.insert(id, next_val);
                            next_val += 1;
                            unpublished += 1;
                        }
                        Err(RingError::Full) => prop_assert_eq!(in_flight.len() + pending_batch.len(), n),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                },
                Op::DropLease => {
                    let before = front.free_requests();
                    if let Ok(l) = front.lease() { drop(l) }
                    prop_assert_eq!(front.free_requests(), before);
                }
                Op::Push => {
                    let _ = front.push_requests().unwrap();
                    published += unpublished;
                    unpublished = 0;
                }
                Op::Consume(k) => for _ in 0..k {
                    match back.next_request().unwrap() {
                        Some(r) => {
                            prop_assert!(published > 0, "backend saw an unpublished request");
                            published -= 1;
                            bind(&mut in_flight, &mut pending_batch, n, &r)?;
                            back_queue.push(r);
                        }
                        None => prop_assert_eq!(published, 0),
                    }
                },
                Op::Respond(k, pos) => for _ in 0..k {
                    if back_queue.is_empty() {
                        prop_assert_eq!(back.respond(Small::default()), Err(RingError::NoRequestPending));
                        break;
                    }
                    let r = back_queue.remove(pos as usize % back_queue.len());
                    back.respond(Small { id: r.id, val: r.val }).unwrap();
                    answered_unpub += 1;
                },
                Op::PushResponses => {
                    let _ = back.push_responses().unwrap();
                    rsp_published += answered_unpub;
                    answered_unpub = 0;
                }
                Op::Poll(k) => for _ in 0..k {
                    match front.poll_response().unwrap() {
                        Some((rsp, v)) => {
                            prop_assert!(rsp_published > 0);
                            rsp_published -= 1;
                            prop_assert_eq!(in_flight.remove(&rsp.id), Some(v), "value comes back with its ID");
                            prop_assert_eq!(rsp.val, v as u16);
                            completed += 1;
                        }
                        None => prop_assert_eq!(rsp_published, 0),
                    }
                },
                Op::SubmitBatch(k) => {
                    let free = front.free_requests();
                    let first = next_val;
                    let sent = front.submit_batch(k.into(), |i| {
                        (Small { id: 0xffff, val: (first + i) as u16 }, first + i)
                    }).unwrap();
                    prop_assert_eq!(sent, u32::from(k).min(free));
                    // The IDs are the ring's: learn them from the backend side below; here
                    // only count. Record values by ID when the backend sees them.
                    next_val += sent;
                    unpublished += sent;
                    pending_batch.extend(first..first + sent);
                }
                Op::AnswerBatch(k) => {
                    let mut seen = Vec::new();
                    let answered = back.answer_requests(k.into(), |r| {
                        seen.push(r);
                        Small { id: r.id, val: r.val }
                    }).unwrap();
                    prop_assert_eq!(answered, u32::from(k).min(published));
                    prop_assert_eq!(seen.len() as u32, answered);
                    published -= answered;
                    for r in seen {
                        bind(&mut in_flight, &mut pending_batch, n, &r)?;
                    }
                    answered_unpub += answered;
                }
                Op::PollBatch(k) => {
                    let mut got = Vec::new();
                    let taken = front.poll_responses(k.into(), |rsp, v| got.push((rsp, v))).unwrap();
                    prop_assert_eq!(taken, u32::from(k).min(rsp_published));
                    rsp_published -= taken;
                    for (rsp, v) in got {
                        prop_assert_eq!(in_flight.remove(&rsp.id), Some(v), "value comes back with its ID");
                        prop_assert_eq!(rsp.val, v as u16);
                        completed += 1;
                    }
                }
                Op::FinalFront => prop_assert_eq!(front.final_check_for_responses().unwrap(), rsp_published > 0),
                Op::FinalBack => prop_assert_eq!(back.final_check_for_requests().unwrap(), published > 0),
            }
            let all = in_flight.len() + pending_batch.len();
            prop_assert_eq!(front.in_flight() as usize, all);
            prop_assert_eq!(front.free_requests() as usize, n - all);
            prop_assert_eq!(front.unpublished(), unpublished);
            prop_assert_eq!(back.pending() as usize, back_queue.len());
        }
        // Drain everything: nothing is lost.
        let _ = front.push_requests().unwrap();
        while let Some(r) = back.next_request().unwrap() {
            bind(&mut in_flight, &mut pending_batch, n, &r)?;
            back_queue.push(r)
        }
        prop_assert!(pending_batch.is_empty());
        for r in back_queue.drain(..) { back.respond(r).unwrap() }
        let _ = back.push_responses().unwrap();
        while let Some((rsp, v)) = front.poll_response().unwrap() {
            prop_assert_eq!(in_flight.remove(&rsp.id), Some(v));
            completed += 1;
        }
        prop_assert!(in_flight.is_empty());
        prop_assert_eq!(completed, next_val);
        prop_assert_eq!(front.free_requests() as usize, n);
        prop_assert!(front.broken().is_none() && back.broken().is_none());
    }
}
