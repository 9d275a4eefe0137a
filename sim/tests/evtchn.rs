//! Simulated event channels: binding, pending/mask semantics, counters, waits, storms.

use std::time::{Duration, Instant};
use xen_sim::evtchn::{MAX_PORTS, storm};
use xen_sim::{Domain, Host, SimEvtchn};
use xen_xenbus::{Damper, Domid, EventChannels, EvtchnError, Port};

struct Pair {
    host: Host,
    front: Domain,
    back: Domain,
    ef: SimEvtchn,
    eb: SimEvtchn,
    pf: Port,
    pb: Port,
}

fn pair() -> Pair {
    let host = Host::new();
    let _dom0 = host.create_domain("dom0");
    let front = host.create_domain("front");
    let back = host.create_domain("back");
    let (ef, eb) = (front.evtchn(), back.evtchn());
    let pf = ef.alloc_unbound(back.domid()).unwrap();
    let pb = eb.bind_interdomain(front.domid(), pf).unwrap();
    Pair {
        host,
        front,
        back,
        ef,
        eb,
        pf,
        pb,
    }
}

#[test]
fn a_fired_port_stays_masked_until_unmasked_and_nothing_is_lost() {
    let p = pair();
    assert_eq!(p.ef.poll().unwrap(), None);
    p.eb.notify(p.pb).unwrap();
    assert_eq!(p.ef.poll().unwrap(), Some(p.pf));
    assert_eq!(p.ef.poll().unwrap(), None, "fired once");
    // More notifications while masked coalesce into the pending bit.
    for _ in 0..5 {
        p.eb.notify(p.pb).unwrap();
    }
    assert_eq!(p.ef.poll().unwrap(), None, "masked");
    let s = p.ef.stats(p.pf).unwrap();
    assert!(s.pending && s.masked && s.connected);
    assert_eq!((s.received, s.fired), (6, 1));
    assert_eq!(p.eb.stats(p.pb).unwrap().sent, 6);
    // Re-arming a pending port fires it again at once.
    p.ef.unmask(p.pf).unwrap();
    assert_eq!(p.ef.poll().unwrap(), Some(p.pf));
    p.ef.unmask(p.pf).unwrap();
    assert_eq!(p.ef.poll().unwrap(), None);
    let s = p.ef.stats(p.pf).unwrap();
    assert!(!s.pending && !s.masked);
    assert_eq!(s.fired, 2);
    // Both directions work.
    p.ef.notify(p.pf).unwrap();
    assert_eq!(p.eb.wait(Duration::from_millis(100)).unwrap(), Some(p.pb));
    assert_eq!(p.host.port_stats(p.back.domid(), p.pb).unwrap().received, 1);
}

#[test]
fn wait_times_out_and_wakes_on_a_notification() {
    let p = pair();
    let t = Instant::now();
    assert_eq!(p.ef.wait(Duration::from_millis(30)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(30));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            p.eb.notify(p.pb).unwrap();
        });
        assert_eq!(p.ef.wait(Duration::from_secs(5)).unwrap(), Some(p.pf));
    });
}

#[test]
fn only_offered_ports_bind_and_only_own_ports_are_usable() {
    let p = pair();
    let third = p.host.create_domain("third");
    let et = third.evtchn();
    // A port offered to `back` cannot be taken by `third`.
    let offered = p.ef.alloc_unbound(p.back.domid()).unwrap();
    assert_eq!(
        et.bind_interdomain(p.front.domid(), offered),
        Err(EvtchnError::NotBindable {
            domid: p.front.domid(),
            port: offered.0
        })
    );
    // Nor can a connected port be bound twice, or port 0, or a port out of range.
    for bad in [p.pf, Port(0), Port(MAX_PORTS), Port(u32::MAX)] {
        assert!(
            p.eb.bind_interdomain(p.front.domid(), bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        et.alloc_unbound(Domid(999)),
        Err(EvtchnError::NoSuchDomain { domid: Domid(999) })
    );
    // Another handle (even of the same domain) cannot use our port.
    let other = p.front.evtchn();
    assert_eq!(
        other.notify(p.pf),
        Err(EvtchnError::InvalidPort { port: p.pf.0 })
    );
    assert!(other.unmask(p.pf).is_err());
    assert!(et.notify(Port(u32::MAX)).is_err());
}

#[test]
fn the_port_table_is_bounded_and_the_host_stays_usable() {
    let p = pair();
    let hog = p.host.create_domain("hog");
    let eh = hog.evtchn();
    let mut n = 0;
    let err = loop {
        match eh.alloc_unbound(p.front.domid()) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, EvtchnError::NoFreePort);
    assert_eq!(n, MAX_PORTS - 1);
    p.eb.notify(p.pb).unwrap();
    assert_eq!(p.ef.poll().unwrap(), Some(p.pf));
    drop(eh);
    hog.evtchn().alloc_unbound(p.front.domid()).unwrap();
}

#[test]
fn a_vanished_peer_leaves_an_unbound_port() {
    let p = pair();
    p.eb.unbind(p.pb).unwrap();
    assert!(!p.ef.stats(p.pf).unwrap().connected);
    p.ef.notify(p.pf).unwrap(); // dropped, as Xen drops it
    assert_eq!(p.eb.poll().unwrap(), None);
    assert_eq!(
        p.eb.notify(p.pb),
        Err(EvtchnError::InvalidPort { port: p.pb.0 })
    );
    // The freed end is offered again and can be re-bound.
    let pb = p.eb.bind_interdomain(p.front.domid(), p.pf).unwrap();
    p.eb.notify(pb).unwrap();
    assert_eq!(p.ef.poll().unwrap(), Some(p.pf));
    // A destroyed peer: our port stays ours but goes nowhere; its handle fails.
    assert!(p.host.destroy_domain(p.back.domid()));
    assert!(!p.ef.stats(p.pf).unwrap().connected);
    p.ef.notify(p.pf).unwrap();
    assert!(p.eb.wait(Duration::from_millis(5)).is_err());
    assert!(p.eb.notify(pb).is_err());
}

/// Runs a storm of `n` empty notifications, one per virtual microsecond, against a handler
/// that re-arms its port after the damper's delay. Returns the handler runs.
fn damped_storm(p: &Pair, damper: &mut Damper, n: u64) -> u64 {
    let tick = Duration::from_micros(1);
    let mut now = Duration::ZERO;
    let mut rearm_at: Option<Duration> = None;
    let mut runs = 0;
    for _ in 0..n {
        p.eb.notify(p.pb).unwrap();
        now += tick;
        if rearm_at.is_some_and(|t| now >= t) {
            p.ef.unmask(p.pf).unwrap();
            rearm_at = None;
        }
        while let Some(port) = p.ef.poll().unwrap() {
            assert_eq!(port, p.pf);
            runs += 1;
            rearm_at = Some(now + damper.record(false));
        }
    }
    if rearm_at.is_some() {
        p.ef.unmask(p.pf).unwrap();
    }
    runs
}

#[test]
fn a_million_event_storm_runs_the_damped_handler_logarithmically_often() {
    let p = pair();
    let n = 1_000_000u64;
    // Linux's lateeoi parameters with a 1 ms jiffy: threshold 1, doubling to a 1 s cap.
    let mut damper = Damper::new(1, Duration::from_millis(1), Duration::from_secs(1));
    let runs = damped_storm(&p, &mut damper, n);
    let log2n = u64::from(64 - n.leading_zeros()); // 20
    // 2 undamped runs, then delays 1, 2, 4, ... ms: the 1 s storm fits ~10 doublings.
    assert!(runs <= 2 + log2n, "{runs} runs for {n} events");
    assert!(runs >= 10, "the handler kept running ({runs})");
    let s = p.ef.stats(p.pf).unwrap();
    assert_eq!(s.received, n, "every notification counted");
    // The final re-arm may fire once more (left queued, not run).
    assert!(
        s.fired == runs || s.fired == runs + 1,
        "{} fired, {runs} runs",
        s.fired
    );
    assert_eq!(p.eb.stats(p.pb).unwrap().sent, n);

    // Undamped, the same storm wakes the handler about every other event.
    let q = pair();
    let mut undamped = 0u64;
    for _ in 0..10_000 {
        q.eb.notify(q.pb).unwrap();
        while q.ef.poll().unwrap().is_some() {
            undamped += 1;
            q.ef.unmask(q.pf).unwrap();
        }
    }
    assert!(undamped >= 5_000);

    // One run that finds real work resets the damper: the next re-arm is immediate.
    assert!(damper.delay() >= Duration::from_millis(256));
    while let Some(port) = p.ef.poll().unwrap() {
        p.ef.unmask(port).unwrap();
    }
    p.eb.notify(p.pb).unwrap();
    assert_eq!(p.ef.wait(Duration::from_millis(100)).unwrap(), Some(p.pf));
    assert_eq!(damper.record(true), Duration::ZERO);
    assert_eq!(damper.spurious(), 0);
    p.ef.unmask(p.pf).unwrap();
    let again = damped_storm(&p, &mut damper, 1000);
    assert!(
        again >= 2,
        "after the reset the handler runs undamped at first"
    );
}

#[test]
fn a_threaded_storm_against_a_sleeping_damper_stays_logarithmic() {
    let p = pair();
    let n = 1_000_000u64;
    let base = Duration::from_millis(1);
    let cap = Duration::from_millis(100);
    let start = Instant::now();
    let mut runs = 0u64;
    std::thread::scope(|s| {
        let stormer = s.spawn(|| storm(&p.eb, p.pb, n));
        let mut damper = Damper::new(1, base, cap);
        loop {
            match p.ef.wait(Duration::from_millis(20)).unwrap() {
                Some(port) => {
                    runs += 1;
                    std::thread::sleep(damper.record(false));
                    p.ef.unmask(port).unwrap();
                }
                None if stormer.is_finished() => break,
                None => {}
            }
        }
        assert_eq!(stormer.join().unwrap(), n);
    });
    let elapsed = start.elapsed();
    // Doubling from 1 ms reaches the cap after log2(cap/base) runs; after that one run per
    // cap. Allow two undamped runs and slack for the final re-arm.
    let ms = elapsed.as_millis() as u64;
    let bound = 2 + 8 + ms / cap.as_millis() as u64 + 2;
    assert!(runs <= bound, "{runs} runs in {ms} ms (bound {bound})");
    assert_eq!(p.ef.stats(p.pf).unwrap().received, n);
}
