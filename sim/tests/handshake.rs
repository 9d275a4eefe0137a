//! The XenbusState handshake over the simulated xenstore: both frontend styles, close from
//! either side, silent and vanishing peers, and hostile values for every key it reads.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use xen_sim::toolstack::{DeviceSpec, Toolstack};
use xen_sim::{Domain, Host};
use xen_xenbus::path::join;
use xen_xenbus::{
    Backend, DeviceLink, Domid, Errno, Frontend, FrontendKind, HandshakeError, ParseErrorKind,
    Perms, Phase, Port, Tx, WatchEvent, XenbusError, XenbusState, Xenstore, XenstoreExt,
};

const T: Duration = Duration::from_millis(900);

/// A xenstore that records the `state` values and transaction of every write.
struct Recorder<X> {
    xs: X,
    log: Mutex<Vec<(Tx, String, Vec<u8>)>>,
}

impl<X> Recorder<X> {
    fn new(xs: X) -> Self {
        Recorder {
            xs,
            log: Mutex::new(Vec::new()),
        }
    }
    fn states(&self) -> Vec<XenbusState> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.ends_with("/state"))
            .map(|(_, p, v)| xen_xenbus::parse::state(p, v).unwrap())
            .collect()
    }
    fn tx_of(&self, suffix: &str) -> Vec<Tx> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.ends_with(suffix))
            .map(|(t, _, _)| *t)
            .collect()
    }
}

impl<X: Xenstore> Xenstore for Recorder<X> {
    fn domid(&self) -> Domid {
        self.xs.domid()
    }
    fn now(&self) -> Duration {
        self.xs.now()
    }
    fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, Errno> {
        self.xs.read(tx, path)
    }
    fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.xs.write(tx, path, value)?;
        self.log
            .lock()
            .unwrap()
            .push((tx, path.to_owned(), value.to_vec()));
        Ok(())
    }
    fn mkdir(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        self.xs.mkdir(tx, path)
    }
    fn rm(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        self.xs.rm(tx, path)
    }
    fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, Errno> {
        self.xs.directory(tx, path)
    }
    fn get_perms(&self, tx: Tx, path: &str) -> Result<Perms, Errno> {
        self.xs.get_perms(tx, path)
    }
    fn set_perms(&self, tx: Tx, path: &str, perms: &Perms) -> Result<(), Errno> {
        self.xs.set_perms(tx, path, perms)
    }
    fn transaction_start(&self) -> Result<Tx, Errno> {
        self.xs.transaction_start()
    }
    fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), Errno> {
        self.xs.transaction_end(tx, commit)
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), Errno> {
        self.xs.watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), Errno> {
        self.xs.unwatch(path, token)
    }
    fn poll_watch(&self) -> Result<Option<WatchEvent>, Errno> {
        self.xs.poll_watch()
    }
    fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, Errno> {
        self.xs.wait_watch(timeout)
    }
}

struct Setup {
    host: Host,
    dom0: Domain,
    front: Domain,
    back: Domain,
    spec: DeviceSpec,
}

fn setup(kind: &str) -> Setup {
    let host = Host::new();
    let dom0 = host.create_domain("dom0");
    let front = host.create_domain("guest");
    let back = host.create_domain("driver-domain");
    let spec = DeviceSpec::new(kind, 0, front.domid(), back.domid())
        .front_key("mac", "00:16:3e:00:00:01")
        .back_key("params", "/dev/null");
    Toolstack::new(&host).unwrap().add_device(&spec).unwrap();
    Setup {
        host,
        dom0,
        front,
        back,
        spec,
    }
}

/// What the backend reads from the frontend: a ring and an event channel.
fn read_ring(xs: &impl Xenstore, dir: &str) -> Result<(u32, Port), XenbusError> {
    let gref = xs.read_grant_ref(Tx::NONE, &join(dir, "ring-ref"))?;
    let port = xs.read_port(Tx::NONE, &join(dir, "event-channel"))?;
    Ok((gref.0, port))
}

fn publish_ring(xs: &impl Xenstore, tx: Tx, dir: &str) -> Result<(), XenbusError> {
    xs.write_uint(tx, &join(dir, "ring-ref"), 8)?;
    xs.write_uint(tx, &join(dir, "event-channel"), 5)
}

fn advertise(xs: &impl Xenstore, tx: Tx, dir: &str) -> Result<(), XenbusError> {
    xs.write_str(tx, &join(dir, "feature-rx-copy"), "1")
}

fn run_pair(
    s: &Setup,
    kind: FrontendKind,
    front_closes: bool,
) -> (Vec<XenbusState>, Vec<XenbusState>) {
    let frec = Recorder::new(s.front.xenstore());
    let brec = Recorder::new(s.back.xenstore());
    std::thread::scope(|sc| {
        let b = sc.spawn(|| {
            let link = DeviceLink::backend(&brec, &s.spec.back_dir()).unwrap();
            assert_eq!(link.peer, s.front.domid());
            let mut back = Backend::new(&brec, link).unwrap();
            let got = back.connect(T, advertise, read_ring).unwrap();
            assert_eq!(got, (8, Port(5)));
            assert_eq!(back.phase(), Phase::Connected);
            if front_closes {
                back.wait_closed(T).unwrap();
            } else {
                // Close once the frontend is connected too.
                let p = join(&s.spec.front_dir(), "state");
                while brec.read_state(Tx::NONE, &p).unwrap() != XenbusState::Connected {
                    std::thread::sleep(Duration::from_millis(1));
                }
                back.close(T).unwrap();
            }
            assert_eq!(back.phase(), Phase::Closed);
        });
        let link = DeviceLink::frontend(&frec, "device/vif/0")
            .or_else(|_| DeviceLink::frontend(&frec, &s.spec.front_dir()))
            .unwrap();
        assert_eq!(link.peer, s.back.domid());
        let mut front = Frontend::new(&frec, link, kind).unwrap();
        front.connect(T, publish_ring).unwrap();
        assert_eq!(front.phase(), Phase::Connected);
        let bstate = frec
            .read_state(Tx::NONE, &join(&s.spec.back_dir(), "state"))
            .unwrap();
        assert_eq!(bstate, XenbusState::Connected);
        if front_closes {
            front.close(T).unwrap();
        } else {
            front.wait_closed(T).unwrap();
        }
        assert_eq!(front.phase(), Phase::Closed);
        b.join().unwrap();
    });
    // The ring details and the new state went in one transaction.
    let ring_tx = frec.tx_of("/ring-ref");
    assert_eq!(ring_tx.len(), 1);
    assert_ne!(ring_tx[0], Tx::NONE);
    assert!(frec.tx_of("/state").contains(&ring_tx[0]));
    let x0 = s.dom0.xenstore();
    for dir in [s.spec.front_dir(), s.spec.back_dir()] {
        assert_eq!(
            x0.read_state(Tx::NONE, &join(&dir, "state")).unwrap(),
            XenbusState::Closed
        );
    }
    (frec.states(), brec.states())
}

#[test]
fn netfront_style_connects_skipping_initialised_and_closes_from_the_front() {
    use XenbusState::*;
    let s = setup("vif");
    let (f, b) = run_pair(&s, FrontendKind::SkipsInitialised, true);
    assert_eq!(f, [Connected, Closing, Closed]);
    assert_eq!(b, [InitWait, Connected, Closing, Closed]);
}

#[test]
fn blkfront_style_connects_via_initialised_and_closes_from_the_back() {
    use XenbusState::*;
    let s = setup("vbd");
    let (f, b) = run_pair(&s, FrontendKind::UsesInitialised, false);
    assert_eq!(f, [Initialised, Connected, Closed]);
    assert_eq!(b, [InitWait, Connected, Closing, Closed]);
}

#[test]
fn a_backend_that_never_answers_times_out() {
    let s = setup("vif");
    let xs = s.front.xenstore();
    let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
    let mut front = Frontend::new(&xs, link, FrontendKind::SkipsInitialised).unwrap();
    let t = Instant::now();
    let e = front
        .connect(Duration::from_millis(150), publish_ring)
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(
            e,
            HandshakeError::Timeout {
                peer: Some(XenbusState::Initialising),
                ..
            }
        ),
        "{e}"
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(1),
        "{took:?}"
    );
}

#[test]
fn a_busy_but_useless_backend_still_times_out() {
    // The backend keeps rewriting Initialising: every write wakes the frontend, and the
    // deadline still holds.
    let s = setup("vif");
    let xs = s.front.xenstore();
    let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
    let mut front = Frontend::new(&xs, link, FrontendKind::SkipsInitialised).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let xb = s.back.xenstore();
            let p = join(&s.spec.back_dir(), "state");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                xb.write(Tx::NONE, &p, b"1").unwrap();
            }
        });
        let e = front.connect(Duration::from_millis(150), publish_ring);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(e, Err(HandshakeError::Timeout { .. })), "{e:?}");
    });
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_backend_that_vanishes_mid_handshake_is_an_error_within_the_timeout() {
    let s = setup("vbd");
    let xb = s.back.xenstore();
    xb.write_state(
        Tx::NONE,
        &join(&s.spec.back_dir(), "state"),
        XenbusState::InitWait,
    )
    .unwrap();
    let xs = s.front.xenstore();
    let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
    let mut front = Frontend::new(&xs, link, FrontendKind::UsesInitialised).unwrap();
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            // Wait for the frontend to publish, then kill the backend's domain.
            let x0 = s.dom0.xenstore();
            let p = join(&s.spec.front_dir(), "state");
            while x0.read_state(Tx::NONE, &p).unwrap() != XenbusState::Initialised {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(s.host.destroy_domain(s.back.domid()));
        });
        let e = front.connect(T, publish_ring).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::PeerGone {
                peer: s.back.domid(),
                path: join(&s.spec.back_dir(), "state"),
            }
        );
    });
    assert!(t.elapsed() < T, "{:?}", t.elapsed());
}

#[test]
fn a_frontend_that_vanishes_mid_handshake_is_an_error_for_the_backend() {
    let s = setup("vif");
    let xs = s.back.xenstore();
    let link = DeviceLink::backend(&xs, &s.spec.back_dir()).unwrap();
    let mut back = Backend::new(&xs, link).unwrap();
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let x0 = s.dom0.xenstore();
            let p = join(&s.spec.back_dir(), "state");
            while x0.read_state(Tx::NONE, &p).unwrap() != XenbusState::InitWait {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(s.host.destroy_domain(s.front.domid()));
        });
        let e = back.connect(T, advertise, read_ring).unwrap_err();
        assert!(
            matches!(e, HandshakeError::PeerGone { peer, .. } if peer == s.front.domid()),
            "{e}"
        );
    });
    assert!(t.elapsed() < T);
}

#[test]
fn a_backend_closing_during_the_handshake_is_refused() {
    let s = setup("vif");
    let xb = s.back.xenstore();
    xb.write_state(
        Tx::NONE,
        &join(&s.spec.back_dir(), "state"),
        XenbusState::Closing,
    )
    .unwrap();
    let xs = s.front.xenstore();
    let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
    let mut front = Frontend::new(&xs, link, FrontendKind::SkipsInitialised).unwrap();
    assert_eq!(
        front.connect(T, publish_ring),
        Err(HandshakeError::PeerClosed {
            state: XenbusState::Closing
        })
    );
    assert_eq!(front.phase(), Phase::Closed);
    assert_eq!(
        xb.read_state(Tx::NONE, &join(&s.spec.front_dir(), "state"))
            .unwrap(),
        XenbusState::Closed,
        "the frontend answered the close"
    );
}

#[test]
fn a_frontend_closing_during_the_handshake_fails_the_backend_connect() {
    let s = setup("vif");
    let xf = s.front.xenstore();
    xf.write_state(
        Tx::NONE,
        &join(&s.spec.front_dir(), "state"),
        XenbusState::Closing,
    )
    .unwrap();
    let xs = s.back.xenstore();
    let link = DeviceLink::backend(&xs, &s.spec.back_dir()).unwrap();
    let mut back = Backend::new(&xs, link).unwrap();
    assert_eq!(
        back.connect(T, advertise, read_ring),
        Err(HandshakeError::PeerClosed {
            state: XenbusState::Closing
        })
    );
    assert_eq!(back.phase(), Phase::Closing);
}

/// Hostile values: garbage, huge, out of range, and the node missing.
fn hostile_values() -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        ("garbage", Some(b"\x01zz\xff".to_vec())),
        ("negative", Some(b"-1".to_vec())),
        ("huge", Some(vec![b'7'; 4000])),
        ("overflow", Some(b"99999999999999999999".to_vec())),
        ("empty", Some(Vec::new())),
        ("missing", None),
    ]
}

fn corrupt(s: &Setup, path: &str, v: &Option<Vec<u8>>) {
    let x0 = s.dom0.xenstore();
    match v {
        Some(v) => x0.write(Tx::NONE, path, v).unwrap(),
        None => x0.rm(Tx::NONE, path).unwrap(),
    }
}

fn assert_parse_error(e: &XenbusError, path: &str, case: &str) {
    match e {
        XenbusError::Parse { path: p, kind } => {
            assert_eq!(p, path, "{case}");
            let ok = match case {
                "garbage" | "negative" => matches!(kind, ParseErrorKind::InvalidByte { .. }),
                "huge" => matches!(kind, ParseErrorKind::TooLong { .. }),
                "overflow" | "range" => matches!(kind, ParseErrorKind::OutOfRange { .. }),
                "empty" => matches!(kind, ParseErrorKind::Empty),
                "missing" => matches!(kind, ParseErrorKind::Missing),
                _ => false,
            };
            assert!(ok, "{case}: {kind:?}");
        }
        other => panic!("{case}: not a parse error: {other}"),
    }
}

#[test]
fn hostile_link_keys_give_typed_errors_naming_the_path() {
    // (side, key, an out-of-range value for it)
    let keys: [(&str, &str, &[u8]); 4] = [
        ("front", "backend-id", b"32752"),
        ("back", "frontend-id", b"70000"),
        ("front", "backend", b"relative/path"),
        ("back", "frontend", b"/has space"),
    ];
    for (side, key, range) in keys {
        let mut cases = hostile_values();
        cases.push(("range", Some(range.to_vec())));
        for (case, v) in cases {
            let s = setup("vif");
            let (dir, xs) = if side == "front" {
                (s.spec.front_dir(), s.front.xenstore())
            } else {
                (s.spec.back_dir(), s.back.xenstore())
            };
            let path = join(&dir, key);
            corrupt(&s, &path, &v);
            let e = if side == "front" {
                DeviceLink::frontend(&xs, &dir).unwrap_err()
            } else {
                DeviceLink::backend(&xs, &dir).unwrap_err()
            };
            let case = match (key, case) {
                // Paths are text: a bad path is a bad byte, an overlong one too long.
                ("backend" | "frontend", "range") => "garbage",
                ("backend" | "frontend", "overflow") => continue,
                ("backend" | "frontend", "negative") => "garbage",
                _ => case,
            };
            assert_parse_error(&e, &path, case);
        }
    }
}

#[test]
fn hostile_peer_states_give_typed_errors_naming_the_path() {
    for (case, v) in hostile_values()
        .into_iter()
        .chain([("range", Some(b"9".to_vec()))])
    {
        // The frontend reading the backend's state.
        let s = setup("vif");
        let path = join(&s.spec.back_dir(), "state");
        corrupt(&s, &path, &v);
        let xs = s.front.xenstore();
        let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
        let mut front = Frontend::new(&xs, link, FrontendKind::SkipsInitialised).unwrap();
        let e = front
            .connect(Duration::from_millis(100), publish_ring)
            .unwrap_err();
        match (case, e) {
            ("missing", HandshakeError::PeerGone { path: p, .. }) => assert_eq!(p, path),
            (_, HandshakeError::Xenbus(e)) => assert_parse_error(&e, &path, case),
            (_, e) => panic!("{case}: {e}"),
        }

        // The backend reading the frontend's state.
        let s = setup("vif");
        let path = join(&s.spec.front_dir(), "state");
        corrupt(&s, &path, &v);
        let xs = s.back.xenstore();
        let link = DeviceLink::backend(&xs, &s.spec.back_dir()).unwrap();
        let mut back = Backend::new(&xs, link).unwrap();
        let e = back
            .connect(Duration::from_millis(100), advertise, read_ring)
            .unwrap_err();
        match (case, e) {
            ("missing", HandshakeError::PeerGone { path: p, .. }) => assert_eq!(p, path),
            (_, HandshakeError::Xenbus(e)) => assert_parse_error(&e, &path, case),
            (_, e) => panic!("{case}: {e}"),
        }
    }
}

#[test]
fn hostile_ring_details_give_typed_errors_and_the_backend_closes() {
    let keys: [(&str, &[u8]); 2] = [("ring-ref", b"0"), ("event-channel", b"131072")];
    for (key, range) in keys {
        let mut cases = hostile_values();
        cases.push(("range", Some(range.to_vec())));
        for (case, v) in cases {
            let s = setup("vbd");
            let xf = s.front.xenstore();
            let fdir = s.spec.front_dir();
            publish_ring(&xf, Tx::NONE, &fdir).unwrap();
            let path = join(&fdir, key);
            corrupt(&s, &path, &v);
            xf.write_state(Tx::NONE, &join(&fdir, "state"), XenbusState::Initialised)
                .unwrap();
            let xs = s.back.xenstore();
            let link = DeviceLink::backend(&xs, &s.spec.back_dir()).unwrap();
            let mut back = Backend::new(&xs, link).unwrap();
            let e = back.connect(T, advertise, read_ring).unwrap_err();
            match e {
                HandshakeError::Xenbus(e) => assert_parse_error(&e, &path, case),
                e => panic!("{key} {case}: {e}"),
            }
            assert_eq!(
                xs.read_state(Tx::NONE, &join(&s.spec.back_dir(), "state"))
                    .unwrap(),
                XenbusState::Closing,
                "the backend tells the frontend"
            );
        }
    }
}

#[test]
fn poll_peer_answers_a_backend_close_without_blocking() {
    let s = setup("vif");
    let xb = s.back.xenstore();
    let bstate = join(&s.spec.back_dir(), "state");
    xb.write_state(Tx::NONE, &bstate, XenbusState::InitWait)
        .unwrap();
    let xs = s.front.xenstore();
    let link = DeviceLink::frontend(&xs, &s.spec.front_dir()).unwrap();
    let mut front = Frontend::new(&xs, link, FrontendKind::SkipsInitialised).unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let x0 = s.dom0.xenstore();
            let p = join(&s.spec.front_dir(), "state");
            while x0.read_state(Tx::NONE, &p).unwrap() != XenbusState::Connected {
                std::thread::sleep(Duration::from_millis(1));
            }
            xb.write_state(Tx::NONE, &bstate, XenbusState::Connected)
                .unwrap();
        });
        front.connect(T, publish_ring).unwrap();
    });
    assert_eq!(front.poll_peer().unwrap(), Phase::Connected);
    xb.write_state(Tx::NONE, &bstate, XenbusState::Closing)
        .unwrap();
    assert_eq!(front.poll_peer().unwrap(), Phase::Closed);
    assert_eq!(
        xb.read_state(Tx::NONE, &join(&s.spec.front_dir(), "state"))
            .unwrap(),
        XenbusState::Closed
    );
}
