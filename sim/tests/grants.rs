//! Grant lifecycle against the simulated hypervisor: every case here runs Xen's
//! `_set_status_v1` logic on the granting domain's table.

use xen_gnttab::abi::{GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING};
use xen_gnttab::{
    Domid, ForeignMap, ForeignMapper, ForeignRef, GntStatus, GrantError, GrantRef, Granted,
    Grantor, Page, ReadOnly, Writable,
};
use xen_sim::{Domain, Host};

fn pair() -> (Host, Domain, Domain) {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain("frontend");
    (host, front, back)
}

fn fref(d: &Domain, gref: GrantRef) -> ForeignRef {
    ForeignRef {
        domid: d.domid(),
        gref,
    }
}

fn status(e: GrantError) -> GntStatus {
    e.status()
        .unwrap_or_else(|| panic!("expected a hypervisor status, got {e:?}"))
}

#[test]
fn contents_written_by_one_side_are_read_by_the_other() {
    let (_h, front, back) = pair();
    let g = Granted::<_, Writable>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    g.mem().write_bytes(100, b"request from the frontend");
    let map = ForeignMap::<_, Writable>::map(back.mapper(), fref(&front, g.gref())).unwrap();
    let mut buf = [0u8; 25];
    map.mem().read_bytes(100, &mut buf);
    assert_eq!(&buf, b"request from the frontend");
    map.mem().write_bytes(2000, b"reply");
    let mut reply = [0u8; 5];
    g.mem().read_bytes(2000, &mut reply);
    assert_eq!(&reply, b"reply");
    map.unmap().unwrap();
    let page = g.end_access().expect("unmapped");
    let mut again = [0u8; 5];
    page.mem().read_bytes(2000, &mut again);
    assert_eq!(
        &again, b"reply",
        "the page that comes back is the page that was granted"
    );
}

#[test]
fn end_access_fails_while_mapped_and_succeeds_after_unmap() {
    let (_h, front, back) = pair();
    let page = front.grants().alloc_page().unwrap();
    let frame = page.frame();
    let g = Granted::<_, ReadOnly>::new(front.grants(), page, back.domid()).unwrap();
    let gref = g.gref();
    assert_eq!(
        front.entry_flags(gref).unwrap(),
        (GTF_PERMIT_ACCESS | GTF_READONLY, back.domid().0)
    );
    let map = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, gref)).unwrap();
    assert_eq!(
        front.entry_flags(gref).unwrap().0,
        GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
    );
    let busy = g.end_access().expect_err("mapped: the end must fail");
    assert_eq!(busy.gref(), gref);
    assert!(busy.to_string().contains("still in use"));
    let busy = busy.retry().expect_err("still mapped");
    drop(map);
    assert_eq!(
        front.entry_flags(gref).unwrap().0,
        GTF_PERMIT_ACCESS | GTF_READONLY,
        "unmap clears GTF_reading"
    );
    let page = busy.retry().expect("unmapped: the end succeeds");
    assert_eq!(page.frame(), frame);
    assert_eq!(front.entry_flags(gref).unwrap().0, 0);
    let err = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, gref)).unwrap_err();
    assert_eq!(
        status(err),
        GntStatus::GeneralError,
        "no map after a successful end"
    );
}

#[test]
fn writable_map_of_a_read_only_grant_is_refused() {
    let (_h, front, back) = pair();
    let g = Granted::<_, ReadOnly>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    let err = ForeignMap::<_, Writable>::map(back.mapper(), fref(&front, g.gref())).unwrap_err();
    assert_eq!(status(err), GntStatus::GeneralError);
    assert_eq!(front.stats().refused, 1);
    assert_eq!(
        front.entry_flags(g.gref()).unwrap().0 & (GTF_READING | GTF_WRITING),
        0,
        "a refused map pins nothing"
    );
    let err = back
        .mapper()
        .copy_to_foreign(b"x", fref(&front, g.gref()), 0)
        .unwrap_err();
    assert_eq!(
        status(err),
        GntStatus::GeneralError,
        "a copy into a read-only grant is refused too"
    );
    g.end_access().expect("nothing pinned");
}

#[test]
fn maps_are_refused_for_the_wrong_domain_bad_refs_and_missing_domains() {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain_with("frontend", 64);
    let other = host.create_domain("other");
    let g = Granted::<_, Writable>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    let e = ForeignMap::<_, ReadOnly>::map(other.mapper(), fref(&front, g.gref())).unwrap_err();
    assert_eq!(
        status(e),
        GntStatus::GeneralError,
        "granted to backend, not to other"
    );
    let e = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, GrantRef(64))).unwrap_err();
    assert_eq!(status(e), GntStatus::BadGntref, "beyond the table");
    let e = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, GrantRef(3))).unwrap_err();
    assert_eq!(status(e), GntStatus::GeneralError, "an invalid entry");
    let e = ForeignMap::<_, ReadOnly>::map(
        back.mapper(),
        ForeignRef {
            domid: Domid(77),
            gref: g.gref(),
        },
    )
    .unwrap_err();
    assert_eq!(status(e), GntStatus::BadDomain);
    let (_, bad) = Granted::<_, Writable>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        Domid::SELF,
    )
    .unwrap_err();
    assert_eq!(bad, GrantError::InvalidDomain(Domid::SELF));
    drop(g);
}

#[test]
fn pins_are_counted_and_only_the_last_unmap_clears_the_flags() {
    let (_h, front, back) = pair();
    let g = Granted::<_, Writable>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    let r = fref(&front, g.gref());
    let ro1 = ForeignMap::<_, ReadOnly>::map(back.mapper(), r).unwrap();
    let ro2 = ForeignMap::<_, ReadOnly>::map(back.mapper(), r).unwrap();
    let rw = ForeignMap::<_, Writable>::map(back.mapper(), r).unwrap();
    assert_eq!(
        front.entry_flags(g.gref()).unwrap().0,
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    drop(rw);
    assert_eq!(
        front.entry_flags(g.gref()).unwrap().0,
        GTF_PERMIT_ACCESS | GTF_READING,
        "last writer gone"
    );
    drop(ro1);
    let g = g.end_access().expect_err("one reader left").into_granted();
    drop(ro2);
    assert_eq!(front.entry_flags(g.gref()).unwrap().0, GTF_PERMIT_ACCESS);
    g.end_access().expect("no pins left");
    assert_eq!(front.stats().mapped, 3);
}

#[test]
fn grant_copy_moves_bytes_and_checks_its_arguments() {
    let (_h, front, back) = pair();
    let g = Granted::<_, Writable>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    g.mem().write_bytes(4000, b"0123456789");
    let r = fref(&front, g.gref());
    let mut buf = [0u8; 10];
    back.mapper().copy_from_foreign(r, 4000, &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
    back.mapper().copy_to_foreign(b"abc", r, 4093).unwrap();
    let mut tail = [0u8; 3];
    g.mem().read_bytes(4093, &mut tail);
    assert_eq!(&tail, b"abc");
    let e = back.mapper().copy_to_foreign(b"abcd", r, 4093).unwrap_err();
    assert_eq!(
        e,
        GrantError::CopyCrossesPage {
            offset: 4093,
            len: 4
        }
    );
    let e = front
        .mapper()
        .copy_from_foreign(r, 0, &mut buf)
        .unwrap_err();
    assert_eq!(
        status(e),
        GntStatus::BadDomain,
        "a domain cannot copy its own grant as foreign"
    );
    assert_eq!(front.stats().copied, 2);
    assert_eq!(
        front.entry_flags(g.gref()).unwrap().0,
        GTF_PERMIT_ACCESS,
        "copies leave no pin behind"
    );
    let page = g.end_access().expect("copies are done");
    let e = back.mapper().copy_from_foreign(r, 0, &mut buf).unwrap_err();
    assert_eq!(status(e), GntStatus::GeneralError, "no copy after the end");
    drop(page);
}

#[test]
fn ref_exhaustion_is_an_error_that_gives_the_page_back() {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain_with("frontend", 16);
    let gt = front.grants();
    let mut live: Vec<_> = (0..8)
        .map(|_| Granted::<_, ReadOnly>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap())
        .collect();
    assert!(
        live.iter().all(|g| g.gref().0 >= 8),
        "reserved refs are never handed out"
    );
    let page = gt.alloc_page().unwrap();
    let frame = page.frame();
    let (page, err) = Granted::<_, ReadOnly>::new(gt, page, back.domid()).unwrap_err();
    assert_eq!(err, GrantError::NoFreeRefs);
    assert_eq!(page.frame(), frame);
    let freed = live.pop().unwrap().end_access().unwrap();
    drop(freed);
    let g = Granted::<_, ReadOnly>::new(gt, page, back.domid()).expect("a ref came back");
    live.push(g);
    for g in live {
        g.end_access().unwrap();
    }
    assert_eq!(gt.free_refs(), 8);
}

#[test]
fn granting_many_pages_is_all_or_nothing() {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain_with("frontend", 12);
    let gt = front.grants();
    let pages: Vec<_> = (0..6).map(|_| gt.alloc_page().unwrap()).collect();
    let (back_pages, err) = Granted::<_, Writable>::new_many(gt, pages, back.domid()).unwrap_err();
    assert_eq!(err, GrantError::NoFreeRefs);
    assert_eq!(back_pages.len(), 2, "the pages never granted come back");
    assert_eq!(
        gt.reclaim_queue().len(),
        4,
        "the grants already made wait for reclaim"
    );
    let done = gt.reclaim();
    assert_eq!((done.ended.len(), done.still_busy), (4, 0));
    let pages: Vec<_> = (0..4).map(|_| gt.alloc_page().unwrap()).collect();
    let all = Granted::<_, Writable>::new_many(gt, pages, back.domid()).unwrap();
    let refs: std::collections::BTreeSet<u32> = all.iter().map(|g| g.gref().0).collect();
    assert_eq!(refs.len(), 4);
    for g in all {
        g.end_access().unwrap();
    }
}

#[test]
fn reclaim_queue_drains_only_after_the_hostile_mapper_lets_go() {
    let (_h, front, back) = pair();
    let gt = front.grants();
    let page = gt.alloc_page().unwrap();
    let frame = page.frame();
    let g = Granted::<_, Writable>::new(gt, page, back.domid()).unwrap();
    g.mem()
        .write_bytes(0, b"secret that must not leak to a new owner");
    let gref = g.gref();
    let hostile = back.hostile();
    let held = hostile.map_and_hold(front.domid(), gref, false).unwrap();
    let pages_before = front.stats().pages;
    // The driver gives up on the grant: it goes to the reclaim queue, never to the allocator.
    g.end_access()
        .expect_err("held")
        .into_granted()
        .into_reclaim();
    assert_eq!(gt.reclaim_queue().len(), 1);
    for _ in 0..3 {
        let r = gt.reclaim();
        assert!(
            r.ended.is_empty(),
            "no page may come back while the peer maps it"
        );
        assert_eq!(r.still_busy, 1);
    }
    assert_eq!(front.stats().pages, pages_before, "the page is not freed");
    let fresh = gt.alloc_page().unwrap();
    assert_ne!(
        fresh.frame(),
        frame,
        "the held frame is not handed out again"
    );
    held.mem().unwrap().write_bytes(0, b"hostile scribble");
    hostile.release(held).unwrap();
    let r = gt.reclaim();
    assert_eq!(r.still_busy, 0);
    assert_eq!(r.ended.len(), 1);
    assert_eq!(r.ended[0].frame(), frame);
    assert!(gt.reclaim_queue().is_empty());
    let stats = gt.reclaim_queue().stats();
    assert_eq!(
        (stats.queued_total, stats.reclaimed_total, stats.pending),
        (1, 1, 0)
    );
    assert_eq!(front.entry_flags(gref).unwrap().0, 0);
}

#[test]
fn dropping_a_live_grant_sends_it_to_reclaim() {
    let (_h, front, back) = pair();
    let gt = front.grants();
    let free = gt.free_refs();
    let g = Granted::<_, ReadOnly>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
    let map = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, g.gref())).unwrap();
    drop(g);
    assert_eq!(gt.free_refs(), free - 1, "the ref stays taken");
    assert_eq!(gt.reclaim().still_busy, 1);
    drop(map);
    assert_eq!(gt.reclaim().ended.len(), 1);
    assert_eq!(gt.free_refs(), free);
}

#[test]
fn a_hostile_peer_guessing_refs_only_gets_what_was_granted_to_it() {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain_with("frontend", 64);
    let thief = host.create_domain("thief");
    let gt = front.grants();
    let g = Granted::<_, Writable>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
    assert!(
        thief
            .hostile()
            .map_everything(front.domid(), 0..64)
            .is_empty()
    );
    let held = back.hostile().map_everything(front.domid(), 0..64);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].target(), Some((front.domid(), g.gref())));
    drop(g);
    assert_eq!(
        gt.reclaim().still_busy,
        1,
        "a kept mapping keeps the grant in reclaim"
    );
}

#[test]
fn destroying_the_mapping_domain_releases_its_pins() {
    let (host, front, back) = pair();
    let gt = front.grants();
    let g = Granted::<_, Writable>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
    let held = back
        .hostile()
        .map_and_hold(front.domid(), g.gref(), false)
        .unwrap();
    let g = g.end_access().expect_err("held").into_granted();
    assert!(host.destroy_domain(back.domid()));
    g.end_access()
        .expect("Xen released the dead domain's mappings");
    let e = ForeignMap::<_, ReadOnly>::map(back.mapper(), fref(&front, GrantRef(8))).unwrap_err();
    assert_eq!(status(e), GntStatus::BadDomain);
    drop(held);
}

#[test]
fn end_access_racing_maps_never_returns_a_mapped_page() {
    // Real threads: a mapper hammers map/unmap while the frontend tries to end. Whenever the
    // end succeeds, every map attempted after it must fail.
    for _ in 0..50 {
        let (_h, front, back) = pair();
        let gt = front.grants().clone();
        let g = Granted::<_, Writable>::new(&gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
        let r = fref(&front, g.gref());
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mapper = back.mapper().clone();
        let ended2 = ended.clone();
        let t = std::thread::spawn(move || {
            let mut maps_after_end = 0;
            for _ in 0..200 {
                let was_ended = ended2.load(std::sync::atomic::Ordering::SeqCst);
                if let Ok(m) = ForeignMap::<_, Writable>::map(&mapper, r) {
                    if was_ended {
                        maps_after_end += 1;
                    }
                    drop(m);
                }
            }
            maps_after_end
        });
        let mut g = Some(g);
        while let Some(gr) = g.take() {
            match gr.end_access() {
                Ok(_page) => {
                    ended.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Err(busy) => {
                    g = Some(busy.into_granted());
                    std::thread::yield_now();
                }
            }
        }
        assert_eq!(
            t.join().unwrap(),
            0,
            "a map succeeded after a successful end"
        );
    }
}
