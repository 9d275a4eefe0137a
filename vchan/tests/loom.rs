//! Loom models of the vchan byte ring: the notify bytes and the indices.
//!
//! Run with `cargo xtask loom` (`--cfg loom`, `LOOM_MAX_PREEMPTIONS=3`, release). The ring
//! code is unchanged under loom: `xen_gnttab::SharedMem` is backed by loom atomics and its
//! `fence` is loom's. Rings are tiny (2 bytes) so that wrapping and a full ring happen in
//! a few steps.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use xen_gnttab::{ReadOnly, SharedMem, SharedRegion, Writable};
use xen_vchan::abi::LIVE_CLOSED;
use xen_vchan::abi::NOTIFY_WRITE;
use xen_vchan::ring::{RingMem, Rings, Role, Shape};

/// Left ring bytes at 24, right ring at 28; the header is the first 24 bytes.
const LEFT: usize = 24;
const RIGHT: usize = 28;
const SIZE: u32 = 2;

struct Mem {
    region: std::sync::Arc<SharedRegion>,
    role: Role,
}

impl RingMem for Mem {
    fn header(&self) -> SharedMem<'_, Writable> {
        self.region.mem()
    }
    fn rx_chunk(&self, _: usize) -> SharedMem<'_, ReadOnly> {
        let off = if self.role == Role::Server {
            LEFT
        } else {
            RIGHT
        };
        self.region.mem().sub(off, SIZE as usize).read_only()
    }
    fn tx_chunk(&self, _: usize) -> SharedMem<'_, Writable> {
        let off = if self.role == Role::Server {
            RIGHT
        } else {
            LEFT
        };
        self.region.mem().sub(off, SIZE as usize)
    }
}

fn pair() -> (Rings<Mem>, Rings<Mem>) {
    let region = std::sync::Arc::new(SharedRegion::new_zeroed(32));
    let shape = Shape::new(SIZE, SIZE).unwrap();
    let end = |role| {
        Rings::new(
            Mem {
                region: region.clone(),
                role,
            },
            role,
            shape,
            shape,
            0,
            0,
        )
    };
    (end(Role::Server), end(Role::Client))
}

/// An event channel: a pending flag a thread sleeps on. Blocking, so a lost wakeup is a
/// deadlock, which loom reports.
#[derive(Default)]
struct Event {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }
    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while !*p {
            p = self.cv.wait(p).unwrap();
        }
        *p = false;
    }
}

/// The notify decision: the reader finds nothing, asks for a signal and looks again
/// (`fast_get_data_ready`) while the writer publishes a byte and takes the request
/// (`send_notify`). Either the reader sees the byte or the writer signals.
#[test]
fn request_notify_vs_send_notify_no_lost_wakeup() {
    loom::model(|| {
        let (mut server, mut client) = pair();
        let writer = thread::spawn(move || {
            assert_eq!(client.poll_tx(1).unwrap(), 2);
            let (n, notify) = client.put(&[9]);
            assert_eq!(n, 1);
            notify
        });
        let saw = server.poll_rx(1).unwrap() == 1;
        let notified = writer.join().unwrap();
        assert!(
            saw || notified,
            "lost wakeup: reader sleeps, writer did not signal"
        );
    });
}

/// Three bytes through a two-byte ring, both ends sleeping on events when they cannot
/// proceed: the writer fills the ring and waits for the reader, the reader drains it and
/// waits for the writer, the indices wrap the ring. No lost wakeup (no deadlock), no
/// overrun (every index check passes), the bytes arrive in order.
///
/// With `hold_writes` the writer goes as `Vchan::write_more` does: `write_now_more` (no
/// barrier, no look at the reader's request, and no look at the reader's index while the
/// room it knew lasts), else a look that asks (`poll_tx`) and `put_more`; it takes the
/// reader's request (`send_notify`) only before it sleeps and after its last byte, as
/// `Vchan::flush` does. Without, it uses `poll_tx` and `put`, which take the request on
/// every write. `hold_reads` is the same for the reader (`read_now_more` / `take_more`, or
/// `poll_rx` / `take`).
///
/// At each such step the holding end also looks at the peer's request without a barrier
/// and takes it only if it sees it, as `Vchan::half_ring` does.
///
/// A holding end also publishes its index lazily: its publish lag is one byte (half the
/// ring), so `write_now_more` / `read_now_more` leave a one-byte step unpublished until the
/// next one, or the `send_notify` of the flush, stores it.
///
/// Without the flush before a holding end's wait, loom reports the deadlock of a peer
/// asleep on bytes it was never told about (checked by hand: loom aborts the process on a
/// deadlock rather than panicking, so that variant cannot be a `should_panic` test).
fn stream(hold_writes: bool, hold_reads: bool) {
    use xen_vchan::abi::{LIVE_CONNECTED, NOTIFY_READ};
    loom::model(move || {
        let (mut server, mut client) = pair();
        server.set_own_live(LIVE_CONNECTED);
        client.set_own_live(LIVE_CONNECTED);
        if hold_writes {
            client.set_publish_lag(1);
            assert_eq!(client.publish_lag(), 1);
        }
        if hold_reads {
            server.set_publish_lag(1);
            assert_eq!(server.publish_lag(), 1);
        }
        let to_reader = Arc::new(Event::default());
        let to_writer = Arc::new(Event::default());
        let (tr, tw) = (to_reader.clone(), to_writer.clone());
        let writer = thread::spawn(move || {
            let data = [1u8, 2, 3];
            let (mut at, mut held) = (0, false);
            while at < data.len() {
                if hold_writes {
                    // One byte a call, so that the room a look found outlasts a call and
                    // the next goes the fast path, which leaves its byte unpublished.
                    if let Some(n) = client.write_now_more(&data[at..at + 1]).unwrap() {
                        at += n;
                        held = true;
                        // Half the ring held (a byte here): `Vchan::half_ring` takes the
                        // request only if a plain look sees it; otherwise one stays owed.
                        if client.asked(NOTIFY_WRITE) {
                            held = false;
                            if client.send_notify(NOTIFY_WRITE) {
                                tr.notify();
                            }
                        }
                        continue;
                    }
                }
                if client.poll_tx(1).unwrap() == 0 {
                    if std::mem::take(&mut held) && client.send_notify(NOTIFY_WRITE) {
                        tr.notify();
                    }
                    tw.wait();
                    continue;
                }
                if hold_writes {
                    let n = client.put_more(&data[at..]);
                    at += n;
                    held |= n > 0;
                } else {
                    let (n, notify) = client.put(&data[at..]);
                    at += n;
                    if notify {
                        tr.notify();
                    }
                }
            }
            if held && client.send_notify(NOTIFY_WRITE) {
                tr.notify();
            }
        });
        let mut got = Vec::new();
        let mut held = false;
        while got.len() < 3 {
            let mut buf = [0u8; 3];
            if hold_reads {
                // One byte a call, as the writer.
                if let Some(n) = server.read_now_more(&mut buf[..1]).unwrap() {
                    assert!(n <= SIZE as usize, "read more than the ring holds");
                    got.extend_from_slice(&buf[..n]);
                    held = true;
                    // As the writer's half-ring look.
                    if server.asked(NOTIFY_READ) {
                        held = false;
                        if server.send_notify(NOTIFY_READ) {
                            to_writer.notify();
                        }
                    }
                    continue;
                }
            }
            if server.poll_rx(1).unwrap() == 0 {
                if std::mem::take(&mut held) && server.send_notify(NOTIFY_READ) {
                    to_writer.notify();
                }
                to_reader.wait();
                continue;
            }
            let n = if hold_reads {
                let n = server.take_more(&mut buf);
                held |= n > 0;
                n
            } else {
                let (n, notify) = server.take(&mut buf);
                if notify {
                    to_writer.notify();
                }
                n
            };
            assert!(n <= SIZE as usize, "read more than the ring holds");
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

#[test]
fn stream_through_a_full_ring_no_lost_wakeup_no_overrun() {
    stream(false, false);
}

/// The writer holds back (`Vchan::write_more`), the reader takes every request.
#[test]
fn put_more_with_a_flush_before_each_wait_no_lost_wakeup() {
    stream(true, false);
}

/// Both ends hold back (`Vchan::write_more` and `read_more`).
#[test]
fn put_more_and_take_more_with_flushes_before_waits_no_lost_wakeup() {
    stream(true, true);
}

/// A bulk writer's last byte, left unpublished by the fast path (publish lag one byte),
/// goes out with the flush after it: `send_notify` stores the index before its barrier, so
/// the reader, asleep on what it saw as an empty ring, is woken and reads both bytes.
///
/// With `send_notify` not publishing first, loom reports the reader's deadlock (checked by
/// hand, as for `stream`).
#[test]
fn a_flush_publishes_what_the_fast_path_left_behind() {
    use xen_vchan::abi::LIVE_CONNECTED;
    loom::model(|| {
        let (mut server, mut client) = pair();
        server.set_own_live(LIVE_CONNECTED);
        client.set_publish_lag(1);
        let to_reader = Arc::new(Event::default());
        let tr = to_reader.clone();
        let writer = thread::spawn(move || {
            // The first byte after a look (published), the second on the room it found.
            assert_eq!(client.write_now_more(&[7]).unwrap(), Some(1));
            assert_eq!(client.put_known(&[8]), Some(1));
            if client.send_notify(NOTIFY_WRITE) {
                tr.notify();
            }
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if server.poll_rx(1).unwrap() == 0 {
                to_reader.wait();
                continue;
            }
            let mut buf = [0u8; 2];
            let (n, _) = server.take(&mut buf);
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert_eq!(got, [7, 8]);
    });
}

/// A writer that writes, then closes: a reader that finds nothing and then sees the live
/// byte cleared looks once more and finds the data (what `Vchan::try_read` does before it
/// reports the end of the stream).
#[test]
fn data_written_before_close_is_seen_after_the_close() {
    loom::model(|| {
        let (mut server, mut client) = pair();
        client.set_own_live(1);
        let writer = thread::spawn(move || {
            client.poll_tx(1).unwrap();
            client.put(&[5, 6]);
            client.set_own_live(LIVE_CLOSED);
        });
        if server.poll_rx(1).unwrap() == 0 && server.peer_live() == LIVE_CLOSED {
            assert_eq!(
                server.poll_rx(1).unwrap(),
                2,
                "end of stream before the data"
            );
        }
        writer.join().unwrap();
    });
}

/// The one-pass paths `Vchan::read`/`write` take first (`read_now`/`write_now`): the writer
/// publishes with `write_now` while the reader finds nothing, asks and looks again. Either
/// the reader sees the byte or the writer signals.
#[test]
fn write_now_vs_request_notify_no_lost_wakeup() {
    loom::model(|| {
        let (mut server, mut client) = pair();
        // `write_now` writes only to a live peer.
        server.set_own_live(xen_vchan::abi::LIVE_CONNECTED);
        let writer = thread::spawn(move || {
            let (n, notify) = client.write_now(&[9]).unwrap().expect("room for a byte");
            assert_eq!(n, 1);
            notify
        });
        let saw = server.poll_rx(1).unwrap() == 1;
        let notified = writer.join().unwrap();
        assert!(saw || notified, "lost wakeup on the write_now path");
    });
}

/// Three bytes through a two-byte ring with the one-pass paths on both ends, each end
/// falling back to ask-and-sleep when its pass finds nothing to do (what `Vchan::read` and
/// `Vchan::write` do). No lost wakeup, no overrun, the bytes in order.
#[test]
fn stream_with_read_now_and_write_now() {
    loom::model(|| {
        let (mut server, mut client) = pair();
        server.set_own_live(xen_vchan::abi::LIVE_CONNECTED);
        let to_reader = Arc::new(Event::default());
        let to_writer = Arc::new(Event::default());
        let (tr, tw) = (to_reader.clone(), to_writer.clone());
        let writer = thread::spawn(move || {
            let data = [1u8, 2, 3];
            let mut at = 0;
            while at < data.len() {
                match client.write_now(&data[at..]).unwrap() {
                    Some((n, notify)) => {
                        at += n;
                        if notify {
                            tr.notify();
                        }
                    }
                    None => {
                        if client.poll_tx(1).unwrap() == 0 {
                            tw.wait();
                        }
                    }
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            let mut buf = [0u8; 3];
            match server.read_now(&mut buf).unwrap() {
                Some((n, notify)) => {
                    assert!(n <= SIZE as usize, "read more than the ring holds");
                    got.extend_from_slice(&buf[..n]);
                    if notify {
                        to_writer.notify();
                    }
                }
                None => {
                    if server.poll_rx(1).unwrap() == 0 {
                        to_reader.wait();
                    }
                }
            }
        }
        writer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// Why `send_notify` has its `fence(SeqCst)` (the `xen_mb()` of libxenvchan's
/// `send_notify`, DESIGN invariant 8): the same exchange written with that fence left out
/// (a release store of the index, then a plain load of the request bit) loses a wakeup:
/// loom finds an execution where the writer's load misses the request while the reader's
/// re-read misses the index. This model must fail.
#[test]
#[should_panic(expected = "lost wakeup")]
fn send_notify_without_its_fence_loses_a_wakeup() {
    use xen_gnttab::shared::{Ordering, fence};
    use xen_vchan::abi::{CLI_NOTIFY, LEFT_PROD, NOTIFY_WRITE};
    loom::model(|| {
        let region = std::sync::Arc::new(SharedRegion::new_zeroed(32));
        let r2 = region.clone();
        let writer = thread::spawn(move || {
            let h = r2.mem();
            h.store_u32(LEFT_PROD, 1, Ordering::Release);
            // Missing: fence(Ordering::SeqCst).
            h.load_u8(CLI_NOTIFY, Ordering::SeqCst) & NOTIFY_WRITE != 0
        });
        let h = region.mem();
        h.fetch_or_u8(CLI_NOTIFY, NOTIFY_WRITE, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let saw = h.load_u32(LEFT_PROD, Ordering::Acquire) == 1;
        let notified = writer.join().unwrap();
        assert!(saw || notified, "lost wakeup");
    });
}
