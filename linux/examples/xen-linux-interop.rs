//! Interop tests of `xen-linux` on real Xen, run inside a Linux domain (dom0 by
//! `cargo xtask realxen`).
//!
//! ```text
//! xen-linux-interop            run every test; one line per test:
//!                                REALXEN-TEST <name> PASS (<ms> ms)
//!                                REALXEN-TEST <name> FAIL: <why>
//!                              then REALXEN-DONE pass=<n> fail=<m>; exit status 1 on failure
//! xen-linux-interop <name>...  run only those tests
//! xen-linux-interop mapper     the second process of the grant tests (driven on stdin)
//! ```
//!
//! The grant tests use two processes, as two domains would: this one grants with our
//! `Gntalloc` (through `Granted`), a child maps with our `Gntdev`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use xen_gnttab::{
    Domid, ForeignMap, ForeignMapper, ForeignRef, GrantError, GrantRef, Granted, Grantor,
    PAGE_SIZE, Page, ReadOnly, Writable,
};
use xen_linux::{
    Device, Errno, Error, Evtchn, EvtchnPort, Gntalloc, Gntdev, TxId, UnmapNotify, Xenbus, XsErrno,
};

type TestResult = Result<(), String>;

/// Turns any error into the test's failure text.
fn fail<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

/// FNV-1a, to compare page contents across processes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn own_domid() -> Result<Domid, String> {
    Xenbus::open()
        .and_then(|xs| xs.own_domid())
        .map_err(fail("own domid"))
}

// ---------------------------------------------------------------------------------------
// The mapper process.

/// The child's side: one mapping at a time, commands on stdin, one answer line each.
fn mapper() -> Result<(), String> {
    let gntdev = Gntdev::open().map_err(fail("open gntdev"))?;
    let evtchn = Evtchn::open().map_err(fail("open evtchn"))?;
    let mut port: Option<EvtchnPort> = None;
    let mut rw: Option<xen_linux::GntdevMapping<Writable>> = None;
    let mut ro: Option<xen_linux::GntdevMapping<ReadOnly>> = None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(fail("stdin"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["map", domid, mode, refs] => {
                let domid = Domid(domid.parse().map_err(fail("domid"))?);
                let refs: Vec<GrantRef> = refs
                    .split(',')
                    .map(|r| r.parse().map(GrantRef))
                    .collect::<Result<_, _>>()
                    .map_err(fail("refs"))?;
                let r = if *mode == "rw" {
                    gntdev
                        .map_grants::<Writable>(domid, &refs)
                        .map(|m| rw = Some(m))
                } else {
                    gntdev
                        .map_grants::<ReadOnly>(domid, &refs)
                        .map(|m| ro = Some(m))
                };
                match r {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                }
            }
            ["sum", off, len] => {
                let (off, len): (usize, usize) =
                    (off.parse().unwrap_or(0), len.parse().unwrap_or(0));
                let mut buf = vec![0u8; len];
                match (&rw, &ro) {
                    (Some(m), _) => m.mem().read_bytes(off, &mut buf),
                    (_, Some(m)) => m.mem().read_bytes(off, &mut buf),
                    _ => return Err("sum: nothing mapped".into()),
                }
                format!("sum {:016x}", fnv(&buf))
            }
            ["peek", off] => {
                let off: usize = off.parse().map_err(fail("off"))?;
                let mut b = [0u8; 1];
                match (&rw, &ro) {
                    (Some(m), _) => m.mem().read_bytes(off, &mut b),
                    (_, Some(m)) => m.mem().read_bytes(off, &mut b),
                    _ => return Err("peek: nothing mapped".into()),
                }
                format!("byte {}", b[0])
            }
            ["write", off, data] => {
                let off: usize = off.parse().map_err(fail("off"))?;
                let data = unhex(data).ok_or("write: bad hex")?;
                let m = rw.as_ref().ok_or("write: no writable mapping")?;
                m.mem().write_bytes(off, &data);
                "ok".to_owned()
            }
            ["bind", domid, remote] => {
                let p = evtchn
                    .bind_interdomain(
                        Domid(domid.parse().map_err(fail("domid"))?),
                        EvtchnPort(remote.parse().map_err(fail("port"))?),
                    )
                    .map_err(fail("bind"))?;
                port = Some(p);
                format!("port {}", p.0)
            }
            ["notify-on-unmap", off] => {
                let off: usize = off.parse().map_err(fail("off"))?;
                let n = UnmapNotify {
                    clear_byte: true,
                    event: port,
                };
                let r = match (&rw, &ro) {
                    (Some(m), _) => m.set_unmap_notify(off, n),
                    (_, Some(m)) => m.set_unmap_notify(off, n),
                    _ => return Err("notify: nothing mapped".into()),
                };
                match r {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                }
            }
            ["wait-event", ms] => {
                let ms: u64 = ms.parse().map_err(fail("ms"))?;
                let fired = evtchn
                    .wait(Some(Duration::from_millis(ms)))
                    .map_err(fail("wait"))?;
                match fired.first() {
                    Some(p) => {
                        evtchn.unmask(*p).map_err(fail("unmask"))?;
                        format!("event {}", p.0)
                    }
                    None => "timeout".to_owned(),
                }
            }
            ["unmap"] => {
                let r = match (rw.take(), ro.take()) {
                    (Some(m), _) => m.unmap(),
                    (_, Some(m)) => m.unmap(),
                    _ => Ok(()),
                };
                match r {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                }
            }
            ["remap-refused", domid, gref, ms] => {
                let domid = Domid(domid.parse().map_err(fail("domid"))?);
                let gref = GrantRef(gref.parse().map_err(fail("gref"))?);
                let deadline = Instant::now() + Duration::from_millis(ms.parse().unwrap_or(0));
                loop {
                    match gntdev.map_grants::<ReadOnly>(domid, &[gref]) {
                        Err(e) => break format!("refused {e}"),
                        Ok(m) => {
                            drop(m);
                            if Instant::now() > deadline {
                                break "still-mappable".to_owned();
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
            ["exit"] => return Ok(()),
            _ => format!("err unknown command {line:?}"),
        };
        writeln!(out, "{reply}").map_err(fail("stdout"))?;
        out.flush().map_err(fail("stdout"))?;
    }
    Ok(())
}

/// The parent's handle on a mapper child.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn() -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(fail("current_exe"))?;
        let mut child = Command::new(exe)
            .arg("mapper")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(fail("spawn mapper"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Peer {
            child,
            stdin,
            stdout,
        })
    }

    fn ask(&mut self, cmd: &str) -> Result<String, String> {
        writeln!(self.stdin, "{cmd}").map_err(fail("to mapper"))?;
        self.stdin.flush().map_err(fail("to mapper"))?;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(fail("from mapper"))?;
        ensure!(n > 0, "mapper exited during `{cmd}`");
        Ok(line.trim_end().to_owned())
    }

    fn expect(&mut self, cmd: &str, want: &str) -> TestResult {
        let got = self.ask(cmd)?;
        ensure!(
            got == want,
            "`{cmd}`: mapper answered `{got}`, expected `{want}`"
        );
        Ok(())
    }

    fn finish(mut self) -> TestResult {
        writeln!(self.stdin, "exit").map_err(fail("to mapper"))?;
        let st = self.child.wait().map_err(fail("wait mapper"))?;
        ensure!(st.success(), "mapper exited with {st}");
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sum_of(mem: xen_gnttab::SharedMem<'_, Writable>, off: usize, len: usize) -> String {
    let mut b = vec![0u8; len];
    mem.read_bytes(off, &mut b);
    format!("sum {:016x}", fnv(&b))
}

// ---------------------------------------------------------------------------------------
// The tests.

/// A gntalloc grant (our Gntalloc through Granted) mapped by another process through our
/// Gntdev: data visible both ways; giving it back while mapped consumes it here while the
/// mapper still reads the last contents intact until it unmaps; then Xen refuses new maps.
fn grant_lifecycle() -> TestResult {
    let me = own_domid()?;
    let gntalloc = Gntalloc::open(me).map_err(fail("open gntalloc"))?;
    let page = gntalloc.alloc_page().map_err(fail("alloc_page"))?;
    let first = pattern(7, PAGE_SIZE);
    page.mem().write_bytes(0, &first);
    let granted =
        Granted::<_, Writable>::new(&gntalloc, page, me).map_err(|(_, e)| format!("grant: {e}"))?;
    let gref = granted.gref();

    let mut peer = Peer::spawn()?;
    peer.expect(&format!("map {} rw {}", me.0, gref.0), "ok")?;
    // The private page's contents were copied into the granted page.
    peer.expect("sum 0 4096", &format!("sum {:016x}", fnv(&first)))?;
    // Grantor -> mapper.
    granted.mem().write_bytes(100, b"from-the-granter");
    peer.expect(
        "sum 100 16",
        &format!("sum {:016x}", fnv(b"from-the-granter")),
    )?;
    // Mapper -> grantor.
    peer.expect(&format!("write 2000 {}", hex(b"from-the-mapper")), "ok")?;
    let mut back = [0u8; 15];
    granted.mem().read_bytes(2000, &mut back);
    ensure!(&back == b"from-the-mapper", "granter read {back:?}");

    // The last contents, then give the grant back while the peer still maps it.
    let last = pattern(201, PAGE_SIZE);
    granted.mem().write_bytes(0, &last);
    let want_last = sum_of(granted.mem(), 0, PAGE_SIZE);
    let released = granted
        .end_access()
        .map_err(|busy| format!("gntalloc end refused: {busy}"))?;
    // `granted` is gone; the token holds no memory. Only the gref remains, for the record.
    ensure!(
        released.grefs() == [gref],
        "released {:?}",
        released.grefs()
    );
    // The mapper still reads the last contents, intact, twice over a short while.
    peer.expect("sum 0 4096", &want_last)?;
    std::thread::sleep(Duration::from_millis(300));
    peer.expect("sum 0 4096", &want_last)?;
    peer.expect("unmap", "ok")?;
    // Once unmapped, the kernel's deferred end-access completes: Xen refuses a new map.
    let got = peer.ask(&format!("remap-refused {} {} 5000", me.0, gref.0))?;
    ensure!(
        got.starts_with("refused gntdev mmap:"),
        "after release: {got}"
    );
    peer.finish()?;
    ensure!(
        gntalloc.reclaim_queue().is_empty(),
        "nothing should wait for reclaim"
    );
    Ok(())
}

/// Xen refuses a writable map of a read-only grant; our API surfaces it as the typed error
/// (and through ForeignMap as the grant error with the same text). A read-only map works.
fn readonly_grant_refuses_writable_map() -> TestResult {
    let me = own_domid()?;
    let gntalloc = Gntalloc::open(me).map_err(fail("open gntalloc"))?;
    let page = gntalloc.alloc_page().map_err(fail("alloc_page"))?;
    page.mem().write_bytes(0, b"read-only data");
    let granted =
        Granted::<_, ReadOnly>::new(&gntalloc, page, me).map_err(|(_, e)| format!("grant: {e}"))?;
    let gntdev = Gntdev::open().map_err(fail("open gntdev"))?;

    match gntdev.map_grants::<Writable>(me, &[granted.gref()]) {
        Err(Error::Kernel {
            device: Device::Gntdev,
            call: "mmap",
            errno: Errno(libc::EINVAL),
        }) => {}
        Err(e) => {
            return Err(format!(
                "writable map of a read-only grant: wrong error {e}"
            ));
        }
        Ok(_) => return Err("writable map of a read-only grant succeeded".into()),
    }
    let r = ForeignRef {
        domid: me,
        gref: granted.gref(),
    };
    match ForeignMap::<Gntdev, Writable>::map(&gntdev, r) {
        Err(GrantError::Os {
            device: "gntdev",
            call: "mmap",
            name: "EINVAL",
            ..
        }) => {}
        Err(e) => return Err(format!("through ForeignMap: wrong error {e}")),
        Ok(_) => return Err("through ForeignMap: writable map succeeded".into()),
    }
    let map = ForeignMap::<Gntdev, ReadOnly>::map(&gntdev, r).map_err(fail("read-only map"))?;
    let mut b = [0u8; 14];
    map.mem().read_bytes(0, &mut b);
    ensure!(&b == b"read-only data", "read {b:?}");
    map.unmap().map_err(fail("unmap"))?;
    // The refusals left nothing mapped: the grant ends (gntalloc ends always report success,
    // so check that a fresh map is refused once it is really gone).
    let _released = granted.end_access().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while gntdev.map_grants::<ReadOnly>(me, &[r.gref]).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "grant still mappable after release"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// GRANT_COPY both ways through our Gntdev; Xen refuses a copy into a read-only grant.
fn grant_copy() -> TestResult {
    let me = own_domid()?;
    let gntalloc = Gntalloc::open(me).map_err(fail("open gntalloc"))?;
    let gntdev = Gntdev::open().map_err(fail("open gntdev"))?;
    let rw =
        Granted::<_, Writable>::new(&gntalloc, gntalloc.alloc_page().map_err(fail("page"))?, me)
            .map_err(|(_, e)| format!("grant: {e}"))?;
    let ro =
        Granted::<_, ReadOnly>::new(&gntalloc, gntalloc.alloc_page().map_err(fail("page"))?, me)
            .map_err(|(_, e)| format!("grant: {e}"))?;
    rw.mem().write_bytes(0, &pattern(3, PAGE_SIZE));
    let src = |g: GrantRef| ForeignRef { domid: me, gref: g };

    let mut whole = vec![0u8; PAGE_SIZE];
    gntdev
        .copy_from_foreign(src(rw.gref()), 0, &mut whole)
        .map_err(fail("copy whole page"))?;
    ensure!(whole == pattern(3, PAGE_SIZE), "copied page differs");
    gntdev
        .copy_to_foreign(b"copied-in", src(rw.gref()), 4000)
        .map_err(fail("copy into grant"))?;
    let mut b = [0u8; 9];
    rw.mem().read_bytes(4000, &mut b);
    ensure!(&b == b"copied-in", "grant holds {b:?}");
    match gntdev.copy_to_foreign(b"x", src(ro.gref()), 0) {
        Err(GrantError::Hypervisor { op: "copy", .. }) => {}
        other => return Err(format!("copy into a read-only grant: {other:?}")),
    }
    match gntdev.copy_from_foreign(src(ro.gref()), 4090, &mut [0u8; 16]) {
        Err(GrantError::CopyCrossesPage { .. }) => {}
        other => return Err(format!("copy across a page: {other:?}")),
    }
    drop((rw.end_access(), ro.end_access()));
    Ok(())
}

/// A three-page block in one ALLOC_GREF, mapped by the peer in one MAP_GRANT_REF. Unmap
/// notifications both ways: the mapper is killed and the kernel clears our byte and signals
/// us; we release the block and the kernel clears the mapper's byte and signals it.
fn block_and_unmap_notify() -> TestResult {
    let me = own_domid()?;
    let gntalloc = Gntalloc::open(me).map_err(fail("open gntalloc"))?;
    let evtchn = Evtchn::open().map_err(fail("open evtchn"))?;

    // 1. The mapper dies; its unmap notification reaches us.
    let block = gntalloc
        .grant_block::<Writable>(me, 3)
        .map_err(fail("grant_block"))?;
    ensure!(block.grefs().len() == 3, "grefs {:?}", block.grefs());
    let data = pattern(9, 3 * PAGE_SIZE);
    block.mem().write_bytes(0, &data);
    let refs: Vec<String> = block.grefs().iter().map(|g| g.0.to_string()).collect();
    let mut peer = Peer::spawn()?;
    peer.expect(&format!("map {} rw {}", me.0, refs.join(",")), "ok")?;
    peer.expect("sum 0 12288", &format!("sum {:016x}", fnv(&data)))?;
    let ours = evtchn.bind_unbound(me).map_err(fail("bind_unbound"))?;
    let theirs = peer.ask(&format!("bind {} {}", me.0, ours.0))?;
    ensure!(theirs.starts_with("port "), "bind: {theirs}");
    let live = 2 * PAGE_SIZE + 21;
    block
        .mem()
        .store_u8(live, 1, xen_gnttab::shared::Ordering::SeqCst);
    peer.expect("peek 8213", "byte 1")?;
    peer.expect(&format!("notify-on-unmap {live}"), "ok")?;
    // Kill it mid-conversation, as a crash would.
    peer.child.kill().map_err(fail("kill mapper"))?;
    let _ = peer.child.wait();
    let fired = evtchn
        .wait(Some(Duration::from_secs(10)))
        .map_err(fail("wait for the unmap event"))?;
    ensure!(
        fired == [ours],
        "after the kill, fired {fired:?}, expected {ours:?}"
    );
    evtchn.unmask(ours).map_err(fail("unmask"))?;
    let byte = block
        .mem()
        .load_u8(live, xen_gnttab::shared::Ordering::SeqCst);
    ensure!(byte == 0, "the kernel did not clear the live byte: {byte}");
    drop(peer);
    let _ = block.release();

    // 2. We release; our gntalloc unmap notification reaches the mapper.
    let block = gntalloc
        .grant_block::<ReadOnly>(me, 2)
        .map_err(fail("grant_block"))?;
    let refs: Vec<String> = block.grefs().iter().map(|g| g.0.to_string()).collect();
    let ours = evtchn.bind_unbound(me).map_err(fail("bind_unbound"))?;
    let mut peer = Peer::spawn()?;
    peer.expect(&format!("map {} ro {}", me.0, refs.join(",")), "ok")?;
    let theirs = peer.ask(&format!("bind {} {}", me.0, ours.0))?;
    ensure!(theirs.starts_with("port "), "bind: {theirs}");
    let live = PAGE_SIZE + 20;
    block
        .mem()
        .store_u8(live, 1, xen_gnttab::shared::Ordering::SeqCst);
    peer.expect(&format!("peek {live}"), "byte 1")?;
    block
        .set_unmap_notify(
            live,
            UnmapNotify {
                clear_byte: true,
                event: Some(ours),
            },
        )
        .map_err(fail("gntalloc SET_UNMAP_NOTIFY"))?;
    ensure!(
        block
            .set_unmap_notify(2 * PAGE_SIZE, UnmapNotify::default())
            .is_err(),
        "an offset past the block must be refused"
    );
    let _released = block.release();
    let got = peer.ask("wait-event 10000")?;
    ensure!(got.starts_with("event "), "mapper saw no event: {got}");
    peer.expect(&format!("peek {live}"), "byte 0")?;
    peer.expect("unmap", "ok")?;
    peer.finish()
}

/// Event channels: bind unbound + interdomain to ourselves, notify round trips, a fired port
/// stays masked until unmasked by write, unbind.
fn event_channels() -> TestResult {
    let me = own_domid()?;
    let a = Evtchn::open().map_err(fail("open evtchn"))?;
    let b = Evtchn::open().map_err(fail("open evtchn"))?;
    let pa = a.bind_unbound(me).map_err(fail("bind_unbound"))?;
    let pb = b
        .bind_interdomain(me, pa)
        .map_err(fail("bind_interdomain"))?;
    let t = Some(Duration::from_secs(5));
    for round in 0..200 {
        b.notify(pb).map_err(fail("notify b->a"))?;
        let got = a.wait(t).map_err(fail("wait a"))?;
        ensure!(got == [pa], "round {round}: a got {got:?}");
        a.unmask(pa).map_err(fail("unmask a"))?;
        a.notify(pa).map_err(fail("notify a->b"))?;
        let got = b.wait(t).map_err(fail("wait b"))?;
        ensure!(got == [pb], "round {round}: b got {got:?}");
        b.unmask(pb).map_err(fail("unmask b"))?;
    }
    // Masked until unmasked: a second notify is held back, then delivered by the unmask.
    b.notify(pb).map_err(fail("notify"))?;
    ensure!(
        a.wait(t).map_err(fail("wait"))? == [pa],
        "first notify lost"
    );
    b.notify(pb).map_err(fail("notify"))?;
    let early = a
        .wait(Some(Duration::from_millis(300)))
        .map_err(fail("wait"))?;
    ensure!(early.is_empty(), "a masked port fired again: {early:?}");
    a.unmask(pa).map_err(fail("unmask"))?;
    ensure!(
        a.wait(t).map_err(fail("wait"))? == [pa],
        "the pending event was not delivered on unmask"
    );
    a.unmask(pa).map_err(fail("unmask"))?;
    ensure!(
        a.pending().map_err(fail("pending"))?.is_empty(),
        "spurious event"
    );
    // Unbind: the port is gone from this handle.
    b.unbind(pb).map_err(fail("unbind"))?;
    match b.notify(pb) {
        Err(Error::Kernel {
            device: Device::Evtchn,
            call: "NOTIFY",
            ..
        }) => {}
        other => return Err(format!("notify after unbind: {other:?}")),
    }
    a.unbind(pa).map_err(fail("unbind"))?;
    Ok(())
}

fn test_dir(xs: &Xenbus, name: &str) -> Result<String, String> {
    let me = xs.own_domid().map_err(fail("own domid"))?;
    let home = xs.domain_path(me).map_err(fail("domain path"))?;
    ensure!(
        home == format!("/local/domain/{}", me.0),
        "domain path {home}"
    );
    Ok(format!(
        "{home}/data/xen-linux-{name}-{}",
        std::process::id()
    ))
}

/// Write, read, directory, rm over /dev/xen/xenbus.
fn xenstore_basic() -> TestResult {
    let xs = Xenbus::open().map_err(fail("open xenbus"))?;
    let dir = test_dir(&xs, "basic")?;
    xs.write(TxId::NONE, &format!("{dir}/a"), b"alpha")
        .map_err(fail("write"))?;
    xs.write(TxId::NONE, &format!("{dir}/b"), b"with\0nul")
        .map_err(fail("write"))?;
    let v = xs
        .read(TxId::NONE, &format!("{dir}/a"))
        .map_err(fail("read"))?;
    ensure!(v == b"alpha", "read {v:?}");
    let v = xs
        .read(TxId::NONE, &format!("{dir}/b"))
        .map_err(fail("read"))?;
    ensure!(v == b"with\0nul", "read {v:?}");
    let mut names = xs.directory(TxId::NONE, &dir).map_err(fail("directory"))?;
    names.sort();
    ensure!(names == ["a", "b"], "directory {names:?}");
    xs.rm(TxId::NONE, &dir).map_err(fail("rm"))?;
    match xs.read(TxId::NONE, &format!("{dir}/a")) {
        Err(Error::Xenstore {
            errno: XsErrno::ENOENT,
            ..
        }) => {}
        other => return Err(format!("read after rm: {other:?}")),
    }
    Ok(())
}

/// A watch fires for the path itself on registration and for a write below it.
fn xenstore_watch() -> TestResult {
    let xs = Xenbus::open().map_err(fail("open xenbus"))?;
    let dir = test_dir(&xs, "watch")?;
    xs.write(TxId::NONE, &dir, b"").map_err(fail("write"))?;
    xs.watch(&dir, "tok-1").map_err(fail("watch"))?;
    let t = Some(Duration::from_secs(10));
    let first = xs
        .next_watch_event(t)
        .map_err(fail("event"))?
        .ok_or("no initial event")?;
    ensure!(
        first.path == dir && first.token == "tok-1",
        "initial event {first:?}"
    );
    let key = format!("{dir}/changed");
    let other = Xenbus::open().map_err(fail("open xenbus"))?;
    other.write(TxId::NONE, &key, b"1").map_err(fail("write"))?;
    let ev = xs
        .next_watch_event(t)
        .map_err(fail("event"))?
        .ok_or("no event for the write")?;
    ensure!(ev.path == key && ev.token == "tok-1", "event {ev:?}");
    xs.unwatch(&dir, "tok-1").map_err(fail("unwatch"))?;
    other.write(TxId::NONE, &key, b"2").map_err(fail("write"))?;
    let late = xs
        .next_watch_event(Some(Duration::from_millis(500)))
        .map_err(fail("event"))?;
    ensure!(late.is_none(), "event after unwatch: {late:?}");
    xs.rm(TxId::NONE, &dir).map_err(fail("rm"))?;
    Ok(())
}

/// A transaction that read a node another writer changed fails to commit with EAGAIN; the
/// retry commits.
fn xenstore_transaction_conflict() -> TestResult {
    let xs = Xenbus::open().map_err(fail("open xenbus"))?;
    let other = Xenbus::open().map_err(fail("open xenbus"))?;
    let dir = test_dir(&xs, "tx")?;
    let key = format!("{dir}/counter");
    xs.write(TxId::NONE, &key, b"0").map_err(fail("write"))?;

    let tx = xs.transaction_start().map_err(fail("transaction_start"))?;
    ensure!(tx != TxId::NONE, "transaction id 0");
    let v = xs.read(tx, &key).map_err(fail("read in tx"))?;
    ensure!(v == b"0", "read in tx {v:?}");
    other
        .write(TxId::NONE, &key, b"outside")
        .map_err(fail("write outside"))?;
    xs.write(tx, &key, b"inside").map_err(fail("write in tx"))?;
    match xs.transaction_end(tx, true) {
        Err(e) if e.is_xenstore_eagain() => {}
        other => return Err(format!("conflicting commit: {other:?}")),
    }
    let v = xs.read(TxId::NONE, &key).map_err(fail("read"))?;
    ensure!(v == b"outside", "the failed transaction leaked: {v:?}");

    let tx = xs.transaction_start().map_err(fail("transaction_start"))?;
    let _ = xs.read(tx, &key).map_err(fail("read in tx"))?;
    xs.write(tx, &key, b"retried")
        .map_err(fail("write in tx"))?;
    xs.transaction_end(tx, true).map_err(fail("retry commit"))?;
    let v = xs.read(TxId::NONE, &key).map_err(fail("read"))?;
    ensure!(v == b"retried", "after the retry {v:?}");
    xs.rm(TxId::NONE, &dir).map_err(fail("rm"))?;
    Ok(())
}

/// A test: its name and body.
type Test = (&'static str, fn() -> TestResult);

const TESTS: &[Test] = &[
    ("grant_lifecycle", grant_lifecycle),
    (
        "readonly_grant_refuses_writable_map",
        readonly_grant_refuses_writable_map,
    ),
    ("grant_copy", grant_copy),
    ("block_and_unmap_notify", block_and_unmap_notify),
    ("event_channels", event_channels),
    ("xenstore_basic", xenstore_basic),
    ("xenstore_watch", xenstore_watch),
    (
        "xenstore_transaction_conflict",
        xenstore_transaction_conflict,
    ),
];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("mapper") {
        return match mapper() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mapper: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(unknown) = args.iter().find(|a| !TESTS.iter().any(|(n, _)| n == a)) {
        eprintln!("unknown test `{unknown}`; tests:");
        for (n, _) in TESTS {
            eprintln!("  {n}");
        }
        return std::process::ExitCode::from(2);
    }
    let (mut pass, mut failed) = (0, 0);
    for (name, test) in TESTS {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        let start = Instant::now();
        let result = std::panic::catch_unwind(test).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .map_or("panicked".to_owned(), |m| format!("panicked: {m}")))
        });
        let ms = start.elapsed().as_millis();
        match result {
            Ok(()) => {
                pass += 1;
                println!("REALXEN-TEST {name} PASS ({ms} ms)");
            }
            Err(e) => {
                failed += 1;
                println!("REALXEN-TEST {name} FAIL: {}", e.replace('\n', " | "));
            }
        }
    }
    println!("REALXEN-DONE pass={pass} fail={failed}");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
