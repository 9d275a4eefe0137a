//! Server and client against the simulator: connect, both directions, packets, close seen
//! from either side, reconnect, xenstore and grants cleaned up.
#![cfg(not(loom))]

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use xen_gnttab::Grantor;
use xen_vchan::{Role, VchanError};
use xen_xenbus::{Tx, Xenstore};

#[test]
fn rendezvous_entries_are_written_readable_by_the_client_only() {
    let w = World::new();
    let l = w.listen_orders(10, 11);
    let xs = w.srv.xenstore();
    let rr = xs.read(Tx::NONE, &format!("{}/ring-ref", w.path)).unwrap();
    assert_eq!(rr, l.ring_ref().0.to_string().into_bytes());
    let ec = xs
        .read(Tx::NONE, &format!("{}/event-channel", w.path))
        .unwrap();
    assert_eq!(ec, l.port().0.to_string().into_bytes());
    let perms = xs
        .get_perms(Tx::NONE, &format!("{}/ring-ref", w.path))
        .unwrap();
    assert_eq!(
        perms,
        xen_xenbus::Perms::shared_read(w.srv.domid(), w.cli.domid())
    );
    // A third domain cannot read them.
    let other = w.host.create_domain("other");
    assert!(
        other
            .xenstore()
            .read(Tx::NONE, &format!("{}/ring-ref", w.path))
            .is_err()
    );
    let report = l.close();
    assert!(report.xenstore_removed);
    assert_eq!(report.teardown.ended, 1);
    assert!(xs.read(Tx::NONE, &format!("{}/ring-ref", w.path)).is_err());
}

#[test]
fn small_stream_both_ways_and_std_io() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    assert_eq!((s.role(), c.role()), (Role::Server, Role::Client));
    assert_eq!((s.rx_size(), s.tx_size()), (1024, 2048));
    assert_eq!((c.rx_size(), c.tx_size()), (2048, 1024));
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    Write::write_all(&mut s, b"pong").unwrap();
    Read::read_exact(&mut c, &mut b).unwrap();
    assert_eq!(&b, b"pong");
    assert_eq!(c.try_read(&mut b), Err(VchanError::WouldBlock));
    assert_eq!(s.data_ready().unwrap(), 0);
    assert_eq!(s.buffer_space().unwrap(), 2048);
    drop(c);
    drop(s);
}

#[test]
fn data_crosses_the_ring_end_many_times() {
    let w = World::new();
    let (mut s, mut c) = w.pair(12, 13);
    let mut rng = Rng(5);
    let mut sum_in = Sum::default();
    let mut sum_out = Sum::default();
    let mut buf = vec![0u8; 3000];
    let mut out = vec![0u8; 3000];
    for _ in 0..200 {
        let n = 1 + rng.below(3000);
        rng.fill(&mut buf[..n]);
        sum_in.update(&buf[..n]);
        c.write_all(&buf[..n]).unwrap();
        s.read_exact(&mut out[..n]).unwrap();
        sum_out.update(&out[..n]);
    }
    assert_eq!(sum_in.finish(), sum_out.finish());
}

#[test]
fn packets_are_all_or_nothing() {
    let w = World::new();
    let (mut s, mut c) = w.pair(11, 10);
    // Server → client ring is 1 KiB.
    assert_eq!(s.tx_size(), 1024);
    assert_eq!(
        s.try_send(&[0u8; 1025]),
        Err(VchanError::TooLarge {
            len: 1025,
            ring: 1024
        })
    );
    s.try_send(&[1u8; 700]).unwrap();
    assert_eq!(
        s.try_send(&[2u8; 400]),
        Err(VchanError::WouldBlock),
        "only 324 free"
    );
    let mut p = [0u8; 701];
    assert_eq!(
        c.try_recv(&mut p),
        Err(VchanError::WouldBlock),
        "only 700 ready"
    );
    c.try_recv(&mut p[..700]).unwrap();
    assert!(p[..700].iter().all(|&b| b == 1));
    s.try_send(&[2u8; 400]).unwrap();
    // Blocking send waits for room made by the reader.
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut q = [0u8; 1000];
            c.recv(&mut q[..400]).unwrap();
            assert!(q[..400].iter().all(|&b| b == 2));
            c.recv(&mut q).unwrap();
            assert!(q.iter().all(|&b| b == 3));
        });
        s.send(&[3u8; 1000]).unwrap();
    });
}

#[test]
fn client_close_is_seen_by_the_server_after_its_data() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    c.write_all(b"last words").unwrap();
    let report = c.close();
    assert_eq!(report.teardown.unmapped, 1);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"last words");
    assert_eq!(s.read(&mut buf), Ok(0), "end of stream");
    assert_eq!(s.try_write(b"x"), Err(VchanError::PeerClosed));
    assert!(!s.is_open());
    let report = s.close();
    assert_eq!(report.teardown.ended, 1);
    assert_eq!(report.teardown.reclaim, 0);
    assert!(w.srv.grants().reclaim_queue().is_empty());
}

#[test]
fn server_close_wakes_a_blocked_client_and_grants_wait_for_its_unmap() {
    let w = World::new();
    let (s, mut c) = w.pair(14, 12);
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            let report = s.close();
            // The client still maps everything: 1 + 4 + 1 grants wait in the reclaim queue.
            assert_eq!(report.teardown.reclaim, 6);
            assert_eq!(report.teardown.ended, 0);
        });
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf), Ok(0), "a blocked read ends at the close");
    });
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(c.try_write(b"x"), Err(VchanError::PeerClosed));
    assert_eq!(w.srv.grants().reclaim_queue().len(), 6);
    let report = c.close();
    assert_eq!(report.teardown.unmapped, 6);
    let r = w.srv.grants().reclaim();
    assert_eq!((r.ended.len(), r.still_busy), (6, 0));
}

#[test]
fn close_and_reconnect_on_the_same_path() {
    let w = World::new();
    for round in 0..3u8 {
        let (mut s, mut c) = w.pair(12, 16);
        c.write_all(&[round; 100]).unwrap();
        let mut b = [0u8; 100];
        s.read_exact(&mut b).unwrap();
        assert_eq!(b, [round; 100]);
        two_way(&mut s, &mut c, 1 << 18, u64::from(round));
        let cr = c.close();
        assert_eq!(cr.teardown.unmapped, 1 + 1 + 16);
        let sr = s.close();
        assert_eq!((sr.teardown.ended, sr.teardown.reclaim), (18, 0));
    }
    assert!(w.srv.grants().reclaim_queue().is_empty());
    assert_eq!(w.srv.stats().pages, 0, "every page came back");
}

#[test]
fn accept_times_out_and_cleans_up() {
    let w = World::new();
    let l = w.listen_orders(10, 11);
    let t = Instant::now();
    assert_eq!(
        l.accept(Duration::from_millis(100)).unwrap_err(),
        VchanError::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(
        w.srv
            .xenstore()
            .read(Tx::NONE, &format!("{}/ring-ref", w.path))
            .is_err()
    );
    let e = w.connect().unwrap_err();
    assert!(e.to_string().contains("no ring-ref"), "{e}");
}

#[test]
fn client_waits_for_the_server_to_appear() {
    let w = World::new();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let config = xen_vchan::ClientConfig::new(w.path.clone())
                .wait(Duration::from_secs(10))
                .options(opts());
            xen_vchan::connect(
                w.cli.mapper(),
                w.cli.evtchn(),
                w.cli.xenstore(),
                w.srv.domid(),
                &config,
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        let l = w.listen_orders(10, 11);
        let mut s = l.accept(T).unwrap();
        let mut c = h.join().unwrap().unwrap();
        c.write_all(b"late").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"late");
    });
}

#[test]
fn blocking_read_times_out_on_a_silent_peer() {
    let w = World::new();
    let (mut s, _c) = w.pair(10, 11);
    s.set_timeout(Some(Duration::from_millis(100)));
    let t = Instant::now();
    assert_eq!(s.read(&mut [0u8; 4]), Err(VchanError::TimedOut));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// `write_more` publishes at once but signals a reader that asked only once half the ring
/// was written that way, or at a flush; a flush with nothing held back signals nothing.
#[test]
fn write_more_signals_at_half_the_ring_or_at_a_flush() {
    let w = World::new();
    // Client writes the left ring: 1024 bytes (order 10).
    let (mut s, mut c) = w.pair(10, 11);
    assert_eq!(c.tx_size(), 1024);
    // The server asks to be told about the next write.
    assert_eq!(s.data_ready().unwrap(), 0);
    let before = c.stats().notifies;
    assert_eq!(c.write_more(&[7u8; 300]).unwrap(), 300);
    // Published at once: a reader that looks sees it.
    assert_eq!(s.data_ready().unwrap(), 300);
    assert_eq!(c.stats().notifies, before, "signalled before half the ring");
    assert_eq!(c.try_write_more(&[7u8; 211]).unwrap(), 211);
    assert_eq!(c.stats().notifies, before, "signalled below half the ring");
    // 512 bytes held: the request is taken and the server signalled.
    assert_eq!(c.try_write_more(&[7u8]).unwrap(), 1);
    assert_eq!(c.stats().notifies, before + 1);
    let mut b = vec![0u8; 512];
    s.read_exact(&mut b).unwrap();
    assert!(b.iter().all(|x| *x == 7));
    // Asked again, told at the flush; a second flush has nothing to say.
    assert_eq!(s.data_ready().unwrap(), 0);
    c.write_more(b"tail").unwrap();
    assert_eq!(c.stats().notifies, before + 1);
    Write::flush(&mut c).unwrap();
    assert_eq!(c.stats().notifies, before + 2);
    c.flush().unwrap();
    assert_eq!(c.stats().notifies, before + 2);
    let mut t = [0u8; 4];
    s.read_exact(&mut t).unwrap();
    assert_eq!(&t, b"tail");
}

/// `write_more` on room an earlier look found leaves its producer index up to the publish
/// lag behind (a quarter of the smaller ring, at most 1 KiB: 256 bytes here, where the
/// smaller ring is 1 KiB); more than that, a flush or a close publishes it.
#[test]
fn write_more_publishes_within_its_lag_and_at_flush_or_close() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    // The first write looks at the ring, and publishes.
    assert_eq!(c.write_more(&[1u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 64);
    // On the room it found: 64 to 256 bytes unpublished (not more than the lag).
    for b in 2..=5u8 {
        assert_eq!(c.write_more(&[b; 64]).unwrap(), 64);
        assert_eq!(s.data_ready().unwrap(), 64, "after write {b}");
    }
    // 320 bytes behind: published (below half the ring, so not by a held-signal flush).
    assert_eq!(c.write_more(&[6u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 384);
    assert_eq!(c.write_more(&[7u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 384);
    c.flush().unwrap();
    assert_eq!(s.data_ready().unwrap(), 448);
    assert_eq!(c.write_more(&[8u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 448);
    // The close publishes before the live byte says closed: nothing is lost.
    drop(c);
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    loop {
        match s.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    let want: Vec<u8> = (1..=8u8).flat_map(|b| [b; 64]).collect();
    assert_eq!(got, want);
}

/// `read_more` is the mirror: what it consumes on bytes an earlier look found is published
/// to the writer (as room) past the lag, or at a flush.
#[test]
fn read_more_publishes_its_room_within_its_lag_and_at_flush() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    c.write_all(&[9u8; 1024]).unwrap();
    assert_eq!(c.buffer_space().unwrap(), 0);
    let mut b = [0u8; 64];
    // A look, published; then 64 to 256 bytes on what it found, unpublished.
    assert_eq!(s.read_more(&mut b).unwrap(), 64);
    assert_eq!(c.buffer_space().unwrap(), 64);
    for i in 2..=5 {
        assert_eq!(s.read_more(&mut b).unwrap(), 64);
        assert_eq!(c.buffer_space().unwrap(), 64, "after read {i}");
    }
    assert_eq!(s.read_more(&mut b).unwrap(), 64);
    assert_eq!(c.buffer_space().unwrap(), 384);
    assert_eq!(s.read_more(&mut b).unwrap(), 64);
    assert_eq!(c.buffer_space().unwrap(), 384);
    s.flush().unwrap();
    assert_eq!(c.buffer_space().unwrap(), 448);
}

/// At half a ring with no request visible, a bulk writer takes none (no barrier) but keeps
/// one byte owed: a request the reader makes after that look is still taken, and signalled,
/// by the next flush.
#[test]
fn a_request_made_after_the_half_ring_look_is_taken_by_the_flush() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    // The request both ends start with (as libxenvchan's server sets them) is taken first.
    assert_eq!(c.write_more(&[3u8; 64]).unwrap(), 64);
    c.flush().unwrap();
    let before = c.stats().notifies;
    // 512 more bytes through a 1 KiB ring: half of it, and the reader has not asked again.
    for _ in 0..8 {
        assert_eq!(c.write_more(&[3u8; 64]).unwrap(), 64);
    }
    assert_eq!(
        c.stats().notifies,
        before,
        "signalled a reader that did not ask"
    );
    // The reader looks and asks to be told about the next write.
    assert!(s.data_ready().unwrap() > 0);
    c.flush().unwrap();
    assert_eq!(
        c.stats().notifies,
        before + 1,
        "the owed request was not taken"
    );
    c.flush().unwrap();
    assert_eq!(c.stats().notifies, before + 1);
    let mut b = vec![0u8; 576];
    s.read_exact(&mut b).unwrap();
    assert!(b.iter().all(|x| *x == 3));
}

/// Any `WouldBlock` a caller sees flushes, the plain `try_*` calls' too: after `write_more`
/// held bytes back, a `try_read` that finds nothing to read (the caller is about to wait on
/// its own) publishes them.
#[test]
fn a_plain_try_call_that_would_block_publishes_what_bulk_calls_held() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    assert_eq!(c.write_more(&[1u8; 64]).unwrap(), 64);
    assert_eq!(c.write_more(&[2u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 64);
    assert_eq!(c.try_read(&mut [0u8; 8]), Err(VchanError::WouldBlock));
    assert_eq!(s.data_ready().unwrap(), 128);
    // The same for a packet receive.
    assert_eq!(c.write_more(&[3u8; 64]).unwrap(), 64);
    assert_eq!(s.data_ready().unwrap(), 128);
    assert_eq!(c.try_recv(&mut [0u8; 8]), Err(VchanError::WouldBlock));
    assert_eq!(s.data_ready().unwrap(), 192);
}

/// A writer holding back its signal never leaves a reader asleep: a full ring flushes
/// before `WouldBlock`, and a blocked reader in another thread gets every byte of a
/// `write_more` stream whose writer never calls `flush` (the waits flush).
#[test]
fn write_more_never_strands_a_sleeping_reader() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    assert_eq!(s.data_ready().unwrap(), 0);
    let before = c.stats().notifies;
    assert_eq!(c.try_write_more(&[1u8; 400]).unwrap(), 400);
    assert_eq!(s.data_ready().unwrap(), 400);
    // Full after 624 more bytes (the half-ring flush signalled once on the way).
    assert_eq!(c.try_write_more(&[1u8; 1000]).unwrap(), 624);
    let after_fill = c.stats().notifies;
    assert_eq!(after_fill, before + 1);
    let mut b = vec![0u8; 1024];
    s.read_exact(&mut b).unwrap();
    assert_eq!(s.data_ready().unwrap(), 0);
    // 100 bytes held, then the ring is full before half a ring is held: the WouldBlock
    // flushes (and signals the reader, who asked) before it returns.
    assert_eq!(c.try_write_more(&[2u8; 100]).unwrap(), 100);
    s.read_exact(&mut b[..100]).unwrap();
    assert_eq!(s.data_ready().unwrap(), 0);
    assert_eq!(c.try_write_more(&[2u8; 400]).unwrap(), 400);
    assert_eq!(c.try_write_more(&[2u8; 1000]).unwrap(), 624);
    let signalled = c.stats().notifies;
    assert_eq!(signalled, after_fill + 1, "half a ring held: signalled");
    s.read_exact(&mut b[..1000]).unwrap();
    assert_eq!(s.data_ready().unwrap(), 24);
    assert_eq!(s.data_ready().unwrap(), 24);
    assert_eq!(c.try_write_more(&[3u8; 400]).unwrap(), 400);
    assert_eq!(c.try_write_more(&[3u8; 600]).unwrap(), 600);
    assert_eq!(c.stats().notifies, signalled + 1);
    s.read_exact(&mut b[..24]).unwrap();
    assert_eq!(s.data_ready().unwrap(), 1000);
    assert_eq!(c.try_write_more(&[3u8; 24]).unwrap(), 24);
    assert_eq!(c.stats().notifies, signalled + 1, "24 bytes held");
    assert_eq!(c.try_write_more(b"x"), Err(VchanError::WouldBlock));
    // `data_ready` asked for a signal (it always does): the full ring's flush gave it.
    assert_eq!(c.stats().notifies, signalled + 2);
    s.read_exact(&mut b).unwrap();

    // Threads: 1 MiB in 100-byte write_more calls, no explicit flush; the reader blocks.
    bulk_stream(s, &mut c, 1 << 20, 100, 4096, false, 9);
}

/// `total` bytes of a seeded random stream from `c` to `s`: `write`-byte `write_more` calls,
/// never flushed, and a reader thread reading up to `read` bytes at a time (`read_more` and
/// a flush after its last byte if `bulk_reader`, else the plain blocking `read`). The last
/// bytes are below half a ring: only a wait (here, the writer waiting, with a limit, for
/// the reader to drain the ring) tells the reader about them. Every byte must arrive, in
/// order.
fn bulk_stream(
    mut s: Server,
    c: &mut Client,
    total: usize,
    write: usize,
    read: usize,
    bulk_reader: bool,
    seed: u64,
) {
    let reader = std::thread::spawn(move || {
        let mut sum = Sum::default();
        let mut buf = vec![0u8; read];
        let mut got = 0;
        while got < total {
            let n = if bulk_reader {
                s.read_more(&mut buf)
            } else {
                s.read(&mut buf)
            }
            .unwrap();
            assert!(n > 0, "end of stream after {got} bytes");
            sum.update(&buf[..n]);
            got += n;
        }
        if bulk_reader {
            s.flush().unwrap();
        }
        (sum.finish(), s)
    });
    let mut rng = Rng(seed);
    let mut sum = Sum::default();
    let mut chunk = vec![0u8; write];
    let mut sent = 0;
    while sent < total {
        let n = write.min(total - sent);
        rng.fill(&mut chunk[..n]);
        sum.update(&chunk[..n]);
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let k = c.write_more(rest).unwrap();
            rest = &rest[k..];
        }
        sent += n;
    }
    let start = Instant::now();
    while c.buffer_space().unwrap() < c.tx_size() {
        assert!(start.elapsed() < Duration::from_secs(20), "reader stranded");
        c.wait(Duration::from_millis(50)).unwrap();
    }
    let (got, _s) = reader.join().unwrap();
    assert_eq!(got, sum.finish(), "seed {seed}");
}

/// `read_more` frees room at once but signals a writer waiting for room only once half the
/// ring was read that way, or at a flush.
#[test]
fn read_more_signals_a_waiting_writer_at_half_the_ring_or_at_a_flush() {
    let w = World::new();
    let (mut s, mut c) = w.pair(10, 11);
    c.write_all(&[5u8; 1024]).unwrap();
    // Full: the writer asks to be told about the next read.
    assert_eq!(c.try_write(b"x"), Err(VchanError::WouldBlock));
    let before = s.stats().notifies;
    let mut b = [0u8; 1024];
    assert_eq!(s.read_more(&mut b[..300]).unwrap(), 300);
    // The room is visible at once to a writer that looks.
    assert_eq!(c.buffer_space().unwrap(), 300);
    assert_eq!(s.stats().notifies, before, "signalled before half the ring");
    assert_eq!(s.try_read_more(&mut b[..212]).unwrap(), 212);
    assert_eq!(
        s.stats().notifies,
        before + 1,
        "half the ring read: signalled"
    );
    // The writer asks again (`buffer_space` always asks); the next 12 bytes are held until
    // the flush.
    assert_eq!(c.buffer_space().unwrap(), 512);
    assert_eq!(s.read_more(&mut b[..12]).unwrap(), 12);
    assert_eq!(s.stats().notifies, before + 1);
    Write::flush(&mut s).unwrap();
    assert_eq!(s.stats().notifies, before + 2, "the flush told the writer");
    s.flush().unwrap();
    assert_eq!(s.stats().notifies, before + 2);
    // The rest, then the end of the stream after the writer closes.
    assert_eq!(s.read_more(&mut b).unwrap(), 500);
    drop(c);
    assert_eq!(s.read_more(&mut b).unwrap(), 0);
}

/// Both ends hold back their signals in threads, over the smallest and a multi-page ring,
/// with write and read sizes that do not divide the ring: every byte arrives, in order, and
/// nobody is left asleep, with no explicit flush but the reader's at the end.
#[test]
fn write_more_and_read_more_stream_in_threads() {
    for (left, right) in [(10, 11), (14, 10)] {
        let w = World::new();
        let (s, mut c) = w.pair(left, right);
        bulk_stream(s, &mut c, 4 << 20, 333, 777, true, left.into());
    }
}

/// A bulk writer learns of a closed peer at its next look at the shared header: writes into
/// room it already knew of may still succeed (as on a socket), never more than that room,
/// and then it gets `PeerClosed`.
#[test]
fn write_more_sees_a_closed_peer_within_the_room_it_knew() {
    let w = World::new();
    let (s, mut c) = w.pair(10, 11);
    assert_eq!(c.write_more(&[1u8; 24]).unwrap(), 24);
    drop(s);
    let mut accepted = 0;
    let err = loop {
        match c.write_more(&[2u8; 100]) {
            Ok(n) => accepted += n,
            Err(e) => break e,
        }
        assert!(accepted <= 1000, "wrote past the room it knew of");
    };
    assert_eq!(err, VchanError::PeerClosed);
    assert!(accepted <= 1000);
}

/// `wait` on a handle shared with another port: that port's event does not end the wait
/// early as a signal (false, after the timeout), and a later signal of ours still does.
#[test]
fn wait_on_a_shared_handle_skips_other_ports() {
    use xen_xenbus::EventChannels;
    let w = World::new();
    let srv_ev = w.srv.evtchn();
    let config = xen_vchan::ServerConfig::with_orders(w.path.clone(), 10, 11)
        .unwrap()
        .options(opts());
    let l = xen_vchan::listen(
        w.srv.grants(),
        &srv_ev,
        w.srv.xenstore(),
        w.cli.domid(),
        &config,
    )
    .unwrap();
    let mut c = w.connect().unwrap();
    let mut s = l.accept(T).unwrap();
    // Another port on the server's handle, fired by the client domain.
    let other = srv_ev.alloc_unbound(w.cli.domid()).unwrap();
    let cli_ev = w.cli.evtchn();
    let far = cli_ev.bind_interdomain(w.srv.domid(), other).unwrap();
    // Drain what connecting left pending.
    while s.wait(Duration::from_millis(20)).unwrap() {}
    cli_ev.notify(far).unwrap();
    let t = Instant::now();
    assert!(!s.wait(Duration::from_millis(300)).unwrap());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Ours still wakes it.
    assert_eq!(s.data_ready().unwrap(), 0);
    c.write_all(b"hi").unwrap();
    assert!(s.wait(Duration::from_secs(5)).unwrap());
}
