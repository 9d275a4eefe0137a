//! The simulated xenstore: layout, permissions, watches, transactions, quotas.

use std::time::Duration;
use xen_sim::Host;
use xen_sim::toolstack::{DeviceSpec, Toolstack};
use xen_sim::xenstore::{Quota, RELEASE_DOMAIN};
use xen_xenbus::{
    Domid, Errno, Perm, Perms, Tx, WatchEvent, XenbusError, Xenstore, XenstoreExt, transact,
};

fn host3() -> (Host, xen_sim::Domain, xen_sim::Domain, xen_sim::Domain) {
    let host = Host::new();
    let d0 = host.create_domain("dom0");
    let a = host.create_domain("alice");
    let b = host.create_domain("bob");
    (host, d0, a, b)
}

fn drain(xs: &impl Xenstore) -> Vec<WatchEvent> {
    let mut v = Vec::new();
    while let Some(e) = xs.poll_watch().unwrap() {
        v.push(e);
    }
    v
}

#[test]
fn each_domain_gets_its_home_layout() {
    let (_host, _d0, a, _b) = host3();
    let xs = a.xenstore();
    assert_eq!(xs.read(Tx::NONE, "name").unwrap(), b"alice");
    assert_eq!(
        xs.read_domid(Tx::NONE, "/local/domain/1/domid").unwrap(),
        Domid(1)
    );
    let mut dir = xs.directory(Tx::NONE, "/local/domain/1").unwrap();
    dir.sort();
    assert_eq!(dir, ["control", "data", "device", "domid", "name"]);
    let home = xs.get_perms(Tx::NONE, "/local/domain/1").unwrap();
    assert_eq!(home.owner, Domid::DOM0);
    assert_eq!(home.access(Domid(1)), Perm::Read);
    assert_eq!(home.access(Domid(2)), Perm::None);
    // The domain may write its data dir, not its name.
    xs.write(Tx::NONE, "data/x", b"1").unwrap();
    assert_eq!(xs.write(Tx::NONE, "name", b"mallory"), Err(Errno::Acces));
    assert_eq!(xs.write(Tx::NONE, "/local/evil", b"1"), Err(Errno::Acces));
    assert_eq!(xs.get_perms(Tx::NONE, "data/x").unwrap().owner, Domid(1));
}

#[test]
fn a_domu_is_denied_another_domus_keys() {
    let (_host, d0, a, b) = host3();
    let (xa, xb) = (a.xenstore(), b.xenstore());
    xa.write(Tx::NONE, "data/secret", b"hunter2").unwrap();
    let p = "/local/domain/1/data/secret";
    assert_eq!(xb.read(Tx::NONE, p), Err(Errno::Acces));
    assert_eq!(xb.write(Tx::NONE, p, b"x"), Err(Errno::Acces));
    assert_eq!(
        xb.write(Tx::NONE, "/local/domain/1/data/new", b"x"),
        Err(Errno::Acces)
    );
    assert_eq!(xb.rm(Tx::NONE, p), Err(Errno::Acces));
    assert_eq!(
        xb.directory(Tx::NONE, "/local/domain/1/data"),
        Err(Errno::Acces)
    );
    assert_eq!(xb.get_perms(Tx::NONE, p), Err(Errno::Acces));
    assert_eq!(
        xb.set_perms(Tx::NONE, p, &Perms::private(Domid(2))),
        Err(Errno::Acces)
    );
    // Not through a transaction either.
    let tx = xb.transaction_start().unwrap();
    assert_eq!(xb.read(tx, p), Err(Errno::Acces));
    xb.transaction_end(tx, false).unwrap();
    // The owner cannot give the node away; domain 0 reads everything.
    assert_eq!(
        xa.set_perms(Tx::NONE, p, &Perms::private(Domid(2))),
        Err(Errno::Perm)
    );
    assert_eq!(d0.xenstore().read(Tx::NONE, p).unwrap(), b"hunter2");
    // Shared explicitly, it becomes readable (not writable).
    xa.set_perms(Tx::NONE, p, &Perms::shared_read(Domid(1), Domid(2)))
        .unwrap();
    assert_eq!(xb.read(Tx::NONE, p).unwrap(), b"hunter2");
    assert_eq!(xb.write(Tx::NONE, p, b"x"), Err(Errno::Acces));
}

#[test]
fn a_watch_fires_once_when_set_and_once_per_change() {
    let (_host, _d0, a, _b) = host3();
    let xs = a.xenstore();
    let other = a.xenstore();
    xs.watch("data/dev", "tok").unwrap();
    assert_eq!(
        drain(&xs),
        [WatchEvent {
            path: "data/dev".into(),
            token: "tok".into()
        }]
    );
    other.write(Tx::NONE, "data/dev/state", b"1").unwrap();
    // Creating data/dev/state also created data/dev: two changes, two events.
    let ev: Vec<String> = drain(&xs).into_iter().map(|e| e.path).collect();
    assert_eq!(ev, ["data/dev", "data/dev/state"]);
    other.write(Tx::NONE, "data/dev/state", b"2").unwrap();
    other.write(Tx::NONE, "data/devx", b"unrelated").unwrap();
    other.write(Tx::NONE, "data/dev/state", b"3").unwrap();
    let ev: Vec<String> = drain(&xs).into_iter().map(|e| e.path).collect();
    assert_eq!(ev, ["data/dev/state", "data/dev/state"]);
    // Removing the watched node fires it once (not once per child).
    other.rm(Tx::NONE, "data/dev").unwrap();
    let ev: Vec<String> = drain(&xs).into_iter().map(|e| e.path).collect();
    assert_eq!(ev, ["data/dev"]);
    let tx = other.transaction_start().unwrap();
    other.write(tx, "data/dev/a", b"1").unwrap();
    other.write(tx, "data/dev/b", b"1").unwrap();
    assert!(drain(&xs).is_empty(), "nothing fires before the commit");
    other.transaction_end(tx, true).unwrap();
    let ev: Vec<String> = drain(&xs).into_iter().map(|e| e.path).collect();
    assert_eq!(ev, ["data/dev", "data/dev/a", "data/dev/b"]);
    xs.unwatch("data/dev", "tok").unwrap();
    other.write(Tx::NONE, "data/dev/state", b"4").unwrap();
    assert!(drain(&xs).is_empty());
    assert_eq!(xs.unwatch("data/dev", "tok"), Err(Errno::NoEnt));
}

#[test]
fn removing_an_ancestor_fires_watches_below_it() {
    let (_host, d0, a, _b) = host3();
    let xs = a.xenstore();
    xs.write(Tx::NONE, "data/x/y/z", b"1").unwrap();
    xs.watch("/local/domain/1/data/x/y/z", "deep").unwrap();
    drain(&xs);
    d0.xenstore()
        .rm(Tx::NONE, "/local/domain/1/data/x")
        .unwrap();
    let ev = drain(&xs);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].path, "/local/domain/1/data/x/y/z");
}

#[test]
fn watches_are_not_delivered_to_domains_without_read_permission() {
    let (_host, _d0, a, b) = host3();
    let (xa, xb) = (a.xenstore(), b.xenstore());
    xb.watch("/local/domain/1/data", "spy").unwrap();
    assert_eq!(
        drain(&xb).len(),
        1,
        "the initial event reveals only the path given"
    );
    xa.write(Tx::NONE, "data/secret", b"1").unwrap();
    xa.write(Tx::NONE, "data/secret", b"2").unwrap();
    xa.rm(Tx::NONE, "data/secret").unwrap();
    assert!(drain(&xb).is_empty(), "bob cannot read alice's data");
    xa.write(Tx::NONE, "data/shared", b"1").unwrap();
    assert!(drain(&xb).is_empty());
    xa.set_perms(
        Tx::NONE,
        "data/shared",
        &Perms::shared_read(Domid(1), Domid(2)),
    )
    .unwrap();
    xa.write(Tx::NONE, "data/shared", b"2").unwrap();
    let ev = drain(&xb);
    assert_eq!(ev.len(), 2, "set_perms and write, now readable: {ev:?}");
    assert!(ev.iter().all(|e| e.path == "/local/domain/1/data/shared"));
}

#[test]
fn transactions_are_isolated_until_commit() {
    let (_host, _d0, a, _b) = host3();
    let (x1, x2) = (a.xenstore(), a.xenstore());
    x1.write(Tx::NONE, "data/k", b"old").unwrap();
    let tx = x1.transaction_start().unwrap();
    x1.write(tx, "data/k", b"new").unwrap();
    x1.write(tx, "data/fresh", b"1").unwrap();
    assert_eq!(x1.read(tx, "data/k").unwrap(), b"new");
    assert_eq!(x2.read(Tx::NONE, "data/k").unwrap(), b"old");
    assert_eq!(x2.read(Tx::NONE, "data/fresh"), Err(Errno::NoEnt));
    assert_eq!(
        x2.read(tx, "data/k"),
        Err(Errno::NoEnt),
        "another connection's tx"
    );
    x1.transaction_end(tx, true).unwrap();
    assert_eq!(x2.read(Tx::NONE, "data/k").unwrap(), b"new");
    // Aborted: nothing applies.
    let tx = x1.transaction_start().unwrap();
    x1.rm(tx, "data/k").unwrap();
    x1.transaction_end(tx, false).unwrap();
    assert_eq!(x2.read(Tx::NONE, "data/k").unwrap(), b"new");
    assert_eq!(x1.transaction_end(tx, true), Err(Errno::NoEnt));
}

#[test]
fn a_conflicting_commit_fails_with_eagain_and_retry_resolves_it() {
    let (_host, _d0, a, _b) = host3();
    let (x1, x2) = (a.xenstore(), a.xenstore());
    x1.write(Tx::NONE, "data/counter", b"0").unwrap();
    let tx = x1.transaction_start().unwrap();
    let v = x1.read_u32(tx, "data/counter").unwrap();
    x2.write(Tx::NONE, "data/counter", b"10").unwrap();
    x1.write(tx, "data/counter", (v + 1).to_string().as_bytes())
        .unwrap();
    assert_eq!(x1.transaction_end(tx, true), Err(Errno::Again));
    assert_eq!(
        x1.read(Tx::NONE, "data/counter").unwrap(),
        b"10",
        "nothing applied"
    );
    // A directory listing conflicts with a child created meanwhile.
    let tx = x1.transaction_start().unwrap();
    x1.directory(tx, "data").unwrap();
    x2.write(Tx::NONE, "data/other", b"1").unwrap();
    x1.write(tx, "data/flag", b"1").unwrap();
    assert_eq!(x1.transaction_end(tx, true), Err(Errno::Again));
    // Disjoint transactions do not conflict.
    let t1 = x1.transaction_start().unwrap();
    let t2 = x2.transaction_start().unwrap();
    x1.write(t1, "data/counter", b"11").unwrap();
    x2.write(t2, "data/other", b"2").unwrap();
    x1.transaction_end(t1, true).unwrap();
    x2.transaction_end(t2, true).unwrap();

    // Two threads incrementing through the retry helper lose no update.
    let host = a.host().clone();
    let mut attempts = 0u32;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let d = host.domain(Domid(1)).unwrap();
                s.spawn(move || {
                    let xs = d.xenstore();
                    let mut tries = 0u32;
                    for _ in 0..50 {
                        transact(&xs, 1000, |tx| {
                            tries += 1;
                            let v = xs.read_u32(tx, "data/counter")?;
                            xs.write_uint(tx, "data/counter", u64::from(v) + 1)
                        })
                        .unwrap();
                    }
                    tries
                })
            })
            .collect();
        for h in hs {
            attempts += h.join().unwrap();
        }
    });
    assert_eq!(x1.read_u32(Tx::NONE, "data/counter").unwrap(), 111);
    assert!(attempts >= 100);
}

#[test]
fn transact_gives_up_after_its_attempts_and_aborts_on_error() {
    let (_host, _d0, a, _b) = host3();
    let (x1, x2) = (a.xenstore(), a.xenstore());
    x1.write(Tx::NONE, "data/c", b"0").unwrap();
    let mut n = 0;
    let r: Result<(), XenbusError> = transact(&x1, 3, |tx| {
        n += 1;
        x1.read_u32(tx, "data/c")?;
        x2.write_uint(Tx::NONE, "data/c", n)?; // someone always interferes
        x1.write_uint(tx, "data/c", 99)
    });
    assert_eq!(r, Err(XenbusError::Conflict { attempts: 3 }));
    assert_eq!(n, 3);
    let r: Result<(), XenbusError> = transact(&x1, 3, |tx| {
        x1.write_uint(tx, "data/c", 1000)?;
        x1.read_u32(tx, "data/missing").map(drop)
    });
    assert!(matches!(r, Err(XenbusError::Parse { ref path, .. }) if path == "data/missing"));
    assert_eq!(x1.read_u32(Tx::NONE, "data/c").unwrap(), 3, "aborted");
}

#[test]
fn quota_exhaustion_is_an_error_and_the_host_stays_usable() {
    let (host, d0, a, b) = host3();
    host.xenstore().set_quota(Quota {
        max_nodes: 40,
        max_value: 64,
        max_watches: 4,
        max_transactions: 2,
        max_queued_events: 1024,
    });
    let (xa, xb, x0) = (a.xenstore(), b.xenstore(), d0.xenstore());
    let mut written = 0;
    let err = loop {
        match xa.write(Tx::NONE, &format!("data/n{written}"), b"x") {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "quota never hit");
    };
    assert_eq!(err, Errno::NoSpc);
    assert_eq!(host.xenstore().nodes_owned(Domid(1)), 40);
    // Not through a transaction either.
    let tx = xa.transaction_start().unwrap();
    assert_eq!(xa.write(tx, "data/tx-node", b"x"), Err(Errno::NoSpc));
    xa.transaction_end(tx, false).unwrap();
    assert_eq!(
        xa.write(Tx::NONE, "data/n0", &[b'v'; 65]),
        Err(Errno::NoSpc)
    );
    assert_eq!(
        x0.write(Tx::NONE, "/tool/big", &[b'v'; 4097]),
        Err(Errno::TooBig)
    );
    for i in 0..4 {
        xa.watch(&format!("data/w{i}"), "t").unwrap();
    }
    assert_eq!(xa.watch("data/w9", "t"), Err(Errno::NoSpc));
    let t1 = xa.transaction_start().unwrap();
    let _t2 = xa.transaction_start().unwrap();
    assert_eq!(xa.transaction_start(), Err(Errno::NoSpc));
    xa.transaction_end(t1, false).unwrap();
    // Others are unaffected; domain 0 is exempt.
    xb.write(Tx::NONE, "data/fine", b"1").unwrap();
    x0.write(Tx::NONE, "/tool/big", &[b'v'; 4096]).unwrap();
    // Freeing nodes gives the room back.
    xa.rm(Tx::NONE, "data/n1").unwrap();
    xa.write(Tx::NONE, "data/again", b"x").unwrap();
}

#[test]
fn a_flood_of_changes_cannot_grow_a_watchers_queue_without_bound() {
    let (host, d0, a, _b) = host3();
    let cap = host.xenstore().quota().max_queued_events;
    let x0 = d0.xenstore();
    x0.watch("/local/domain/1", "all").unwrap();
    let xa = a.xenstore();
    for i in 0..(cap as u64 + 500) {
        xa.write_uint(Tx::NONE, "data/spam", i).unwrap();
    }
    assert_eq!(drain(&x0).len(), cap);
    assert_eq!(x0.dropped_events(), 501);
}

#[test]
fn destroying_a_domain_removes_its_home_and_fires_release_domain() {
    let (host, d0, a, _b) = host3();
    let x0 = d0.xenstore();
    x0.watch(RELEASE_DOMAIN, "rel").unwrap();
    x0.watch("/local/domain/1/name", "name").unwrap();
    drain(&x0);
    let xa = a.xenstore();
    assert!(host.destroy_domain(Domid(1)));
    let ev = drain(&x0);
    assert!(
        ev.iter()
            .any(|e| e.token == "rel" && e.path == RELEASE_DOMAIN)
    );
    assert!(ev.iter().any(|e| e.token == "name"));
    assert_eq!(x0.read(Tx::NONE, "/local/domain/1"), Err(Errno::NoEnt));
    assert_eq!(xa.read(Tx::NONE, "name"), Err(Errno::Io));
    assert_eq!(xa.wait_watch(Duration::from_millis(10)), Err(Errno::Io));
}

#[test]
fn wait_watch_times_out_and_wakes_on_change() {
    let (_host, _d0, a, _b) = host3();
    let xs = a.xenstore();
    xs.watch("data/w", "t").unwrap();
    drain(&xs);
    let t = std::time::Instant::now();
    assert_eq!(xs.wait_watch(Duration::from_millis(30)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(30));
    let writer = a.xenstore();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            writer.write(Tx::NONE, "data/w", b"1").unwrap();
        });
        let e = xs.wait_watch(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(e.path, "data/w");
    });
}

#[test]
fn the_toolstack_creates_a_device_pair_like_xl() {
    let (host, _d0, a, b) = host3();
    let spec = DeviceSpec::new("vif", 0, Domid(1), Domid(2))
        .front_key("mac", "00:16:3e:00:00:01")
        .back_key("mac", "00:16:3e:00:00:01")
        .back_key("bridge", "xenbr0");
    let ts = Toolstack::new(&host).unwrap();
    ts.add_device(&spec).unwrap();
    let (xf, xb) = (a.xenstore(), b.xenstore());
    let fd = "/local/domain/1/device/vif/0";
    let bd = "/local/domain/2/backend/vif/1/0";
    assert_eq!(
        xf.read_abs_path(Tx::NONE, &format!("{fd}/backend"))
            .unwrap(),
        bd
    );
    assert_eq!(
        xf.read_domid(Tx::NONE, &format!("{fd}/backend-id"))
            .unwrap(),
        Domid(2)
    );
    assert_eq!(
        xb.read_abs_path(Tx::NONE, &format!("{bd}/frontend"))
            .unwrap(),
        fd
    );
    assert_eq!(
        xb.read_domid(Tx::NONE, &format!("{bd}/frontend-id"))
            .unwrap(),
        Domid(1)
    );
    for p in [format!("{fd}/state"), format!("{bd}/state")] {
        assert_eq!(
            xf.read_state(Tx::NONE, &p).unwrap(),
            xen_xenbus::XenbusState::Initialising
        );
    }
    assert_eq!(
        xb.read(Tx::NONE, &format!("{bd}/bridge")).unwrap(),
        b"xenbr0"
    );
    assert_eq!(
        xb.read(Tx::NONE, &format!("{fd}/mac")).unwrap(),
        b"00:16:3e:00:00:01"
    );
    // Each side owns its directory; the peer reads it and cannot write it.
    assert_eq!(
        xf.get_perms(Tx::NONE, fd).unwrap(),
        Perms::shared_read(Domid(1), Domid(2))
    );
    assert_eq!(
        xb.get_perms(Tx::NONE, bd).unwrap(),
        Perms::shared_read(Domid(2), Domid(1))
    );
    xf.write(Tx::NONE, &format!("{fd}/tx-ring-ref"), b"8")
        .unwrap();
    assert_eq!(
        xb.read(Tx::NONE, &format!("{fd}/tx-ring-ref")).unwrap(),
        b"8"
    );
    assert_eq!(
        xf.write(Tx::NONE, &format!("{bd}/state"), b"4"),
        Err(Errno::Acces)
    );
    assert_eq!(
        xb.write(Tx::NONE, &format!("{fd}/state"), b"4"),
        Err(Errno::Acces)
    );
    // A third domain sees neither.
    let c = host.create_domain("carol");
    assert_eq!(
        c.xenstore().read(Tx::NONE, &format!("{fd}/mac")),
        Err(Errno::Acces)
    );
    ts.remove_device(&spec).unwrap();
    assert_eq!(xf.read(Tx::NONE, fd), Err(Errno::NoEnt));
}

#[test]
fn bad_paths_are_rejected() {
    let (_host, _d0, a, _b) = host3();
    let xs = a.xenstore();
    for p in ["", "/a//b", "data/", "data/a b", "@foo", "data/\u{e9}"] {
        assert_eq!(xs.write(Tx::NONE, p, b"x"), Err(Errno::Inval), "{p:?}");
    }
    assert_eq!(xs.watch("@bogus", "t"), Err(Errno::Inval));
    assert_eq!(xs.rm(Tx::NONE, "/"), Err(Errno::Inval));
}
