//! Safe programs against the grant invariants, on the simulator (DESIGN invariants 1-3, 10).
//!
//! Each test is an attack a driver or a backend written in safe Rust could try with the public
//! API, and asserts that it is refused. The attacks that the compiler refuses (a safe
//! `Grantor`, raw grant/end/map calls, the grant-table view, a writable platform view of a
//! mapping) are compile-fail cases in `compile-fail/tests/ui/`; a panic inside a platform call
//! is `gnttab/tests/unwind.rs`.

use xen_gnttab::{
    Domid, ForeignMap, ForeignRef, GntStatus, GrantError, Granted, Grantor, Page, ReadOnly,
    Writable,
};
use xen_sim::{Domain, Host};

fn pair() -> (Host, Domain, Domain) {
    let host = Host::new();
    let back = host.create_domain("backend");
    let front = host.create_domain("frontend");
    (host, front, back)
}

/// Review point 3: a backend that maps a read-only grant gets no way to write it, neither
/// through `ForeignMap` (a writable map is refused by the hypervisor, as on Xen) nor through a
/// held mapping of the hostile toolkit (its writable view is `None`).
#[test]
fn a_read_only_grant_yields_no_writable_view_to_the_backend() {
    let (_h, front, back) = pair();
    let g = Granted::<_, ReadOnly>::new(
        front.grants(),
        front.grants().alloc_page().unwrap(),
        back.domid(),
    )
    .unwrap();
    g.mem().write_bytes(0, b"guest data");
    let r = ForeignRef {
        domid: front.domid(),
        gref: g.gref(),
    };
    let e = ForeignMap::<_, Writable>::map(back.mapper(), r).unwrap_err();
    assert_eq!(e.status(), Some(GntStatus::GeneralError), "{e}");
    let ro = ForeignMap::<_, ReadOnly>::map(back.mapper(), r).unwrap();
    let mut seen = [0u8; 10];
    ro.mem().read_bytes(0, &mut seen);
    assert_eq!(&seen, b"guest data");
    drop(ro);
    let held = back
        .hostile()
        .map_and_hold(front.domid(), g.gref(), true)
        .unwrap();
    assert!(held.mem().is_none(), "no writable view of a read-only pin");
    let mut seen = [0u8; 10];
    held.read_only_mem().unwrap().read_bytes(0, &mut seen);
    assert_eq!(&seen, b"guest data");
    back.hostile().release(held).unwrap();
    let page = g.end_access().expect("unmapped");
    let mut after = [0u8; 10];
    page.mem().read_bytes(0, &mut after);
    assert_eq!(&after, b"guest data", "nothing wrote the read-only grant");
}

/// Review point 1's goal, tried with what safe code has: the page of a grant the peer maps
/// never comes back, whatever mix of `end_access`, drop, `into_reclaim` and `reclaim` a driver
/// uses, and it comes back exactly once after the peer unmaps.
#[test]
fn no_sequence_of_safe_calls_returns_a_mapped_page() {
    let (_h, front, back) = pair();
    let gt = front.grants();
    let g = Granted::<_, Writable>::new(gt, gt.alloc_page().unwrap(), back.domid()).unwrap();
    let r = ForeignRef {
        domid: front.domid(),
        gref: g.gref(),
    };
    let map = ForeignMap::<_, Writable>::map(back.mapper(), r).unwrap();
    let busy = g.end_access().unwrap_err();
    let busy = busy.retry().unwrap_err();
    busy.into_granted().into_reclaim();
    for _ in 0..3 {
        let pass = gt.reclaim();
        assert!(pass.ended.is_empty(), "reclaimed while mapped");
        assert_eq!(pass.still_busy, 1);
    }
    map.mem().write_bytes(0, b"backend still writes");
    map.unmap().unwrap();
    let pass = gt.reclaim();
    assert_eq!(pass.ended.len(), 1, "ended once the peer let go");
    assert_eq!(gt.reclaim().ended.len(), 0, "and only once");
}

/// Granting to a reserved domain id (`DOMID_SELF` and the other ids Xen reserves) is refused
/// before anything is written to the table.
#[test]
fn grants_to_reserved_domains_are_refused() {
    let (_h, front, _back) = pair();
    let gt = front.grants();
    let free = gt.free_refs();
    for bad in [Domid::SELF, Domid(0x7FF0), Domid(0xFFFF)] {
        match Granted::<_, Writable>::new(gt, gt.alloc_page().unwrap(), bad) {
            Err((_page, GrantError::InvalidDomain(d))) => assert_eq!(d, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(gt.free_refs(), free, "no ref was taken");
}
