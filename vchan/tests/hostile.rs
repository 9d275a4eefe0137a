//! A hostile peer against each end: indices moved past the ring, orders rewritten after
//! connect, bogus live values, a zeroed page, bad xenstore entries, a client that never
//! unmaps, an event storm. Every case ends in an error (or the end of the stream), never a
//! panic, an out-of-bounds access or a hang.
#![cfg(not(loom))]

mod common;

use common::*;
use std::time::{Duration, Instant};
use xen_gnttab::shared::Ordering;
use xen_gnttab::{GrantRef, Grantor};
use xen_sim::HeldMapping;
use xen_vchan::abi::*;
use xen_vchan::{Broken, ClientConfig, LayoutError, VchanError};
use xen_xenbus::{Tx, Xenstore};

/// A hostile mapping of the server's shared page, held by the client's domain.
fn grab(w: &World, gref: GrantRef) -> HeldMapping {
    w.cli
        .hostile()
        .map_and_hold(w.srv.domid(), gref, false)
        .unwrap()
}

fn pair_with_page(w: &World, l: u16, r: u16) -> (Server, Client, HeldMapping) {
    let lis = w.listen_orders(l, r);
    let page = grab(w, lis.ring_ref());
    let c = w.connect().unwrap();
    let s = lis.accept(T).unwrap();
    (s, c, page)
}

#[test]
fn producer_index_past_the_ring_breaks_the_reader_and_disconnects() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    // The client claims 1025 bytes in a 1024-byte ring.
    m.store_u32(LEFT_PROD, 1025, Ordering::Release);
    let e = s.try_read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(
        e,
        VchanError::Broken(Broken::RxOverrun {
            prod: 1025,
            cons: 0,
            size: 1024
        })
    );
    // Sticky, for every call, and the client is told the server is gone.
    assert!(matches!(s.try_write(b"x"), Err(VchanError::Broken(_))));
    assert!(matches!(s.read(&mut [0u8; 1]), Err(VchanError::Broken(_))));
    assert!(matches!(s.data_ready(), Err(VchanError::Broken(_))));
    assert_eq!(m.load_u8(SRV_LIVE, Ordering::Acquire), LIVE_CLOSED);
    assert_eq!(c.read(&mut [0u8; 1]), Ok(0));
}

#[test]
fn producer_index_behind_the_consumer_breaks_the_reader() {
    let w = World::new();
    let (s, mut c, page) = pair_with_page(&w, 12, 12);
    let m = page.mem().unwrap();
    // The server's producer "moves back": prod - cons wraps to nearly 2^32.
    m.store_u32(RIGHT_PROD, u32::MAX, Ordering::Release);
    assert!(matches!(
        c.read(&mut [0u8; 8]),
        Err(VchanError::Broken(Broken::RxOverrun { .. }))
    ));
    drop(s);
}

#[test]
fn consumer_index_moved_past_our_producer_breaks_the_writer() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 13, 11);
    let m = page.mem().unwrap();
    c.write_all(&[7u8; 100]).unwrap();
    // The server claims to have consumed more than was ever produced.
    m.store_u32(LEFT_CONS, 5000, Ordering::Release);
    assert!(matches!(
        c.try_write(b"more"),
        Err(VchanError::Broken(Broken::TxOverrun { .. }))
    ));
    assert!(matches!(c.buffer_space(), Err(VchanError::Broken(_))));
    // The server sees the client go.
    let mut buf = [0u8; 200];
    assert_eq!(s.read(&mut buf), Ok(100));
    assert_eq!(s.read(&mut buf), Ok(0));
}

#[test]
fn own_indices_rewritten_by_the_peer_are_never_read_back() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    c.write_all(b"abcdef").unwrap();
    // The peer scribbles on *our* indices: the client's producer and the server's consumer.
    m.store_u32(LEFT_PROD, 900, Ordering::Release);
    let mut b = [0u8; 3];
    // The server trusts the (rewritten) producer but its own consumer is private: it reads
    // at 0..3 and publishes 3, whatever the page said.
    m.store_u32(LEFT_CONS, 500, Ordering::Release);
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"abc");
    assert_eq!(m.load_u32(LEFT_CONS, Ordering::Acquire), 3);
    // The client's next write goes to its private producer index (6), not 900.
    m.store_u32(LEFT_PROD, 6, Ordering::Release);
    c.write_all(b"gh").unwrap();
    assert_eq!(m.load_u32(LEFT_PROD, Ordering::Acquire), 8);
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"defgh");
}

#[test]
fn orders_rewritten_after_connect_change_nothing() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    // Claim 1 MiB rings: a re-reading implementation would copy far outside the page.
    m.store_u16(LEFT_ORDER, 20, Ordering::Release);
    m.store_u16(RIGHT_ORDER, 20, Ordering::Release);
    // And garbage grant refs.
    for i in 0..16 {
        m.store_u32(GRANTS + 4 * i, 0xdead_0000 + i as u32, Ordering::Release);
    }
    assert_eq!((s.rx_size(), s.tx_size()), (1024, 2048));
    two_way(&mut s, &mut c, 1 << 18, 42);
}

#[test]
fn bogus_live_values_break_the_channel() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    m.store_u8(SRV_LIVE, 7, Ordering::Release);
    // Only looked at when it matters: a write, or a read with nothing ready.
    assert_eq!(
        c.try_write(b"x"),
        Err(VchanError::Broken(Broken::BogusLive(7)))
    );
    // After accept, "client not yet connected" is bogus too.
    m.store_u8(CLI_LIVE, LIVE_WAITING, Ordering::Release);
    assert_eq!(
        s.try_read(&mut [0u8; 4]),
        Err(VchanError::Broken(Broken::BogusLive(2)))
    );
    for v in [3u8, 0x80, 0xff] {
        let w = World::new();
        let (mut s, _c, page) = pair_with_page(&w, 10, 11);
        page.mem().unwrap().store_u8(CLI_LIVE, v, Ordering::Release);
        assert_eq!(
            s.try_write(b"x"),
            Err(VchanError::Broken(Broken::BogusLive(v)))
        );
    }
}

#[test]
fn a_zeroed_page_is_refused_at_connect() {
    let w = World::new();
    let lis = w.listen_orders(10, 11);
    let page = grab(&w, lis.ring_ref());
    page.mem().unwrap().fill(0, PAGE_SIZE, 0);
    assert_eq!(
        w.connect().unwrap_err(),
        VchanError::Layout(LayoutError::OrderOutOfRange(0))
    );
    // Orders fine but live bytes not "waiting for a client".
    let m = page.mem().unwrap();
    m.store_u16(LEFT_ORDER, 10, Ordering::Release);
    m.store_u16(RIGHT_ORDER, 11, Ordering::Release);
    assert_eq!(
        w.connect().unwrap_err(),
        VchanError::NotListening {
            srv_live: 0,
            cli_live: 0
        }
    );
    // A list of refs that runs into the in-page ring.
    m.store_u16(RIGHT_ORDER, 20, Ordering::Release);
    m.store_u8(CLI_LIVE, LIVE_WAITING, Ordering::Release);
    m.store_u8(SRV_LIVE, LIVE_CONNECTED, Ordering::Release);
    assert!(matches!(
        w.connect().unwrap_err(),
        VchanError::Layout(LayoutError::GrantsOverlap { .. })
    ));
    // Refs that are not grants of the server.
    m.store_u16(RIGHT_ORDER, 12, Ordering::Release);
    m.store_u32(GRANTS, 1999, Ordering::Release);
    assert!(matches!(w.connect().unwrap_err(), VchanError::Grant(_)));
    // A failed connect leaves no mapping behind.
    drop(page);
    assert_eq!(w.cli.stats().holding, 1, "only the hostile mapping");
}

#[test]
fn a_page_zeroed_after_connect_ends_the_stream_without_a_hang() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 12, 14);
    s.write_all(&[1u8; 1000]).unwrap();
    page.mem().unwrap().fill(0, PAGE_SIZE, 0);
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    // prod 0, our cons 0: nothing ready, and the server's live byte says closed.
    assert_eq!(c.read(&mut buf), Ok(0));
    assert_eq!(c.try_write(b"x"), Err(VchanError::PeerClosed));
    // The server: the client's live byte is gone too.
    assert_eq!(s.try_write(b"x"), Err(VchanError::PeerClosed));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn bad_rendezvous_entries_are_refused() {
    let w = World::new();
    let xs = w.srv.xenstore();
    let perms = xen_xenbus::Perms::shared_read(w.srv.domid(), w.cli.domid());
    let put = |k: &str, v: &str| {
        let key = format!("{}/{k}", w.path);
        xs.write(Tx::NONE, &key, v.as_bytes()).unwrap();
        xs.set_perms(Tx::NONE, &key, &perms).unwrap();
    };
    put("ring-ref", "0");
    put("event-channel", "5");
    // Refused by the grant-ref parser already (refs below 8 are reserved), or by us.
    let e = w.connect().unwrap_err();
    assert!(
        matches!(
            e,
            VchanError::Rendezvous {
                why: "ring-ref is 0",
                ..
            } | VchanError::Xenbus(_)
        ),
        "{e}"
    );
    put("ring-ref", "9");
    put("event-channel", "0");
    let e = w.connect().unwrap_err();
    assert!(
        matches!(
            e,
            VchanError::Rendezvous {
                why: "event-channel is 0",
                ..
            } | VchanError::Xenbus(_)
        ),
        "{e}"
    );
    for bad in ["-1", "12abc", "", "99999999999"] {
        put("event-channel", bad);
        assert!(
            matches!(w.connect().unwrap_err(), VchanError::Xenbus(_)),
            "{bad:?}"
        );
    }
    // A port that is not offered to us.
    put("event-channel", "5");
    assert!(matches!(w.connect().unwrap_err(), VchanError::Evtchn(_)));
}

#[test]
fn a_client_that_never_unmaps_leaves_the_grants_in_reclaim() {
    let w = World::new();
    let lis = w.listen_orders(13, 12);
    let ring_ref = lis.ring_ref();
    let c = w.connect().unwrap();
    let s = lis.accept(T).unwrap();
    // The client's domain keeps its own extra mappings of every page, and never lets go.
    let hostile = w.cli.hostile();
    let shared = hostile
        .map_and_hold(w.srv.domid(), ring_ref, false)
        .unwrap();
    let mut held = vec![];
    for i in 0..3 {
        let r = shared
            .mem()
            .unwrap()
            .load_u32(GRANTS + 4 * i, Ordering::Relaxed);
        held.push(
            hostile
                .map_and_hold(w.srv.domid(), GrantRef(r), true)
                .unwrap(),
        );
    }
    let cr = c.close();
    assert_eq!(cr.teardown.unmapped, 4);
    let sr = s.close();
    assert!(sr.xenstore_removed);
    assert_eq!((sr.teardown.ended, sr.teardown.reclaim), (0, 4));
    let q = w.srv.grants().reclaim_queue();
    assert_eq!(q.len(), 4);
    // Retrying changes nothing while they are mapped: nothing is freed or reused.
    let r = w.srv.grants().reclaim();
    assert_eq!((r.ended.len(), r.still_busy), (0, 4));
    assert_eq!(w.srv.stats().pages, 4, "the pages stay allocated");
    // A new channel gets fresh refs, never the held ones.
    let (s2, c2) = w.pair(13, 12);
    drop((c2, s2));
    for h in held {
        hostile.release(h).unwrap();
    }
    hostile.release(shared).unwrap();
    let r = w.srv.grants().reclaim();
    assert_eq!((r.ended.len(), r.still_busy), (4, 0));
    assert!(q.is_empty());
}

#[test]
fn an_event_storm_is_damped_and_a_real_write_still_gets_through() {
    let w = World::new();
    let lis = w.listen_orders(10, 11);
    let sport = lis.port();
    let cev = w.cli.evtchn();
    let config = ClientConfig::new(w.path.clone()).options(opts());
    let mut c = xen_vchan::connect(
        w.cli.mapper(),
        &cev,
        w.cli.xenstore(),
        w.srv.domid(),
        &config,
    )
    .unwrap();
    let mut s = lis.accept(T).unwrap();
    s.set_timeout(Some(Duration::from_millis(2500)));
    let before = w.host.port_stats(w.srv.domid(), sport).unwrap();
    let cport = c.port();
    let sent = std::thread::scope(|sc| {
        let storm = sc.spawn(|| {
            let mut n = 0;
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(2000) {
                n += xen_sim::evtchn::storm(&cev, cport, 1000);
            }
            n
        });
        let t = Instant::now();
        assert_eq!(s.read(&mut [0u8; 8]), Err(VchanError::TimedOut));
        assert!(t.elapsed() < Duration::from_secs(4));
        storm.join().unwrap()
    });
    let after = w.host.port_stats(w.srv.domid(), sport).unwrap();
    let fired = after.fired - before.fired;
    assert!(sent > 10_000, "a real storm: {sent}");
    // Doubling delays from 4 ms to the 1 s cap: about a dozen wake-ups in 2.5 s.
    assert!(fired < 40, "{fired} wake-ups for {sent} events");
    println!("storm: {sent} events, {fired} wake-ups");
    // A real write after the storm: the damper resets and the data arrives.
    s.set_timeout(Some(T));
    c.write_all(b"real").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"real");
}

/// The bulk calls keep using what their last look validated, and check the peer's indices
/// as strictly at their next look: a producer index moved past the ring breaks a
/// `read_more` reader, a consumer index moved past our producer breaks a `write_more`
/// writer, and neither reads or writes outside what was validated before.
#[test]
fn indices_moved_past_the_ring_break_the_bulk_calls_at_their_next_look() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    c.write_more(&[1u8; 100]).unwrap();
    c.flush().unwrap();
    let mut b = [0u8; 60];
    assert_eq!(s.read_more(&mut b).unwrap(), 60);
    // The client now claims 2000 bytes in the 1024-byte ring: the 40 bytes the server
    // validated are still read, the next look breaks.
    m.store_u32(LEFT_PROD, 2000, Ordering::Release);
    assert_eq!(s.read_more(&mut b[..40]).unwrap(), 40);
    assert!(b[..40].iter().all(|x| *x == 1));
    assert_eq!(
        s.read_more(&mut b),
        Err(VchanError::Broken(Broken::RxOverrun {
            prod: 2000,
            cons: 100,
            size: 1024
        }))
    );
    assert!(matches!(s.read_more(&mut b), Err(VchanError::Broken(_))));

    let w = World::new();
    let (_s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    assert_eq!(c.write_more(&[2u8; 1000]).unwrap(), 1000);
    // The server claims to have consumed 5000 of 1000 bytes: the 24 bytes of room the
    // client knew are still written, the next look breaks.
    m.store_u32(LEFT_CONS, 5000, Ordering::Release);
    assert_eq!(c.write_more(&[3u8; 24]).unwrap(), 24);
    assert!(matches!(
        c.write_more(b"x"),
        Err(VchanError::Broken(Broken::TxOverrun { .. }))
    ));
}

/// The bulk calls publish their index late (the publish lag) but always from their private
/// copy: a peer that scribbles on our producer or consumer index while `write_more` /
/// `read_more` hold part of it back sees the true value stored at the next publication
/// (here the flush), and nothing we compute changes.
#[test]
fn own_indices_rewritten_while_the_bulk_calls_hold_them_back_are_restored() {
    let w = World::new();
    let (mut s, mut c, page) = pair_with_page(&w, 10, 11);
    let m = page.mem().unwrap();
    // The first write looks and publishes 64; the second is held back (lag 256 here).
    assert_eq!(c.write_more(&[1u8; 64]).unwrap(), 64);
    assert_eq!(c.write_more(&[2u8; 64]).unwrap(), 64);
    assert_eq!(m.load_u32(LEFT_PROD, Ordering::Acquire), 64);
    m.store_u32(LEFT_PROD, 900, Ordering::Release);
    c.flush().unwrap();
    assert_eq!(m.load_u32(LEFT_PROD, Ordering::Acquire), 128);
    // The reader: a look publishes 32, the next read on what it found is held back.
    let mut b = [0u8; 32];
    assert_eq!(s.read_more(&mut b).unwrap(), 32);
    assert_eq!(s.read_more(&mut b).unwrap(), 32);
    assert_eq!(m.load_u32(LEFT_CONS, Ordering::Acquire), 32);
    m.store_u32(LEFT_CONS, 7, Ordering::Release);
    s.flush().unwrap();
    assert_eq!(m.load_u32(LEFT_CONS, Ordering::Acquire), 64);
    // The stream is intact.
    let mut rest = [0u8; 64];
    s.read_exact(&mut rest).unwrap();
    assert!(rest.iter().all(|x| *x == 2));
    assert_eq!(s.broken(), None);
    assert_eq!(c.broken(), None);
}
