//! `xensim`: the simulated Xen host on the command line.
//!
//! `xensim demo` runs a guest granting pages to a backend that maps them, then a hostile
//! backend that keeps a mapping while the grant waits in the reclaim queue (never reused),
//! and finally lets go; then a vchan stream between two domains, with its throughput. Every
//! claim it prints is checked; a failed check exits with status 1.
#![deny(unsafe_code)]

use std::process::ExitCode;
use xen_gnttab::{ForeignMap, ForeignRef, Granted, Grantor, Page, ReadOnly, Writable};
use xen_sim::Host;

const USAGE: &str = "usage: xensim <command>

commands:
  demo    grant pages to a backend, show a hostile backend that keeps a mapping, and
          stream bytes over a vchan between two domains
  help    this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["demo"] => match demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn ensure(cond: bool, what: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.to_owned()) }
}

fn demo() -> Result<(), String> {
    let e = |e: xen_gnttab::GrantError| e.to_string();
    let host = Host::new();
    let back = host.create_domain("backend");
    let guest = host.create_domain("guest");
    let gt = guest.grants();
    println!("== grant lifecycle ==");
    println!(
        "host: {} \"{}\" and {} \"{}\"",
        back.domid(),
        back.name(),
        guest.domid(),
        guest.name()
    );

    // The guest grants four pages, writable, and writes a request into each.
    let pages = (0..4)
        .map(|_| gt.alloc_page())
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let grants =
        Granted::<_, Writable>::new_many(gt, pages, back.domid()).map_err(|(_, err)| e(err))?;
    for (i, g) in grants.iter().enumerate() {
        g.mem().write_bytes(0, format!("request {i}").as_bytes());
    }
    let refs: Vec<u32> = grants.iter().map(|g| g.gref().0).collect();
    println!(
        "[guest]   granted 4 pages to {} (writable): refs {refs:?}",
        back.domid()
    );

    // The backend maps them, reads the requests and writes replies.
    let maps = grants
        .iter()
        .map(|g| {
            ForeignMap::<_, Writable>::map(
                back.mapper(),
                ForeignRef {
                    domid: guest.domid(),
                    gref: g.gref(),
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    for (i, m) in maps.iter().enumerate() {
        let mut buf = [0u8; 9];
        m.mem().read_bytes(0, &mut buf);
        ensure(
            buf == *format!("request {i}").as_bytes(),
            "backend read what the guest wrote",
        )?;
        m.mem().write_bytes(2048, format!("reply {i}").as_bytes());
    }
    println!(
        "[backend] mapped {} grants, read each request, wrote a reply",
        maps.len()
    );

    // While they are mapped, ending fails and gives the grant back, not the page.
    let mut busy = Vec::new();
    for g in grants {
        match g.end_access() {
            Ok(_) => return Err("end-access succeeded while the backend maps the page".into()),
            Err(b) => busy.push(b),
        }
    }
    println!(
        "[guest]   end-access while mapped: {} busy (\"{}\"); no page returned",
        busy.len(),
        busy[0]
    );
    for m in maps {
        m.unmap().map_err(e)?;
    }
    println!("[backend] unmapped all 4");
    for (i, b) in busy.into_iter().enumerate() {
        let page = b
            .retry()
            .map_err(|b| format!("end still failing after unmap: {b}"))?;
        let mut buf = [0u8; 7];
        page.mem().read_bytes(2048, &mut buf);
        ensure(
            buf == *format!("reply {i}").as_bytes(),
            "guest reads the backend's reply",
        )?;
    }
    println!("[guest]   end-access after unmap: 4 pages back, each with the backend's reply");

    println!();
    println!("== hostile backend ==");
    let page = gt.alloc_page().map_err(e)?;
    let frame = page.frame();
    let g = Granted::<_, ReadOnly>::new(gt, page, back.domid()).map_err(|(_, err)| e(err))?;
    g.mem().write_bytes(0, b"guest data");
    let hostile = back.hostile();
    let held = hostile
        .map_and_hold(guest.domid(), g.gref(), true)
        .map_err(e)?;
    println!(
        "[hostile] maps {:?} (frame {:#x}) and keeps it",
        g.gref(),
        frame.0
    );
    let busy = g
        .end_access()
        .err()
        .ok_or("end-access succeeded while held")?;
    println!("[guest]   end-access: {busy}; the grant goes to the reclaim queue");
    drop(busy);
    for pass in 1..=3 {
        let r = gt.reclaim();
        ensure(
            r.ended.is_empty() && r.still_busy == 1,
            "nothing is reclaimed while held",
        )?;
        println!(
            "[guest]   reclaim pass {pass}: {} ended, {} still busy",
            r.ended.len(),
            r.still_busy
        );
    }
    let fresh = gt.alloc_page().map_err(e)?;
    ensure(
        fresh.frame() != frame,
        "a held frame is never handed out again",
    )?;
    println!(
        "[guest]   a new page gets frame {:#x}: frame {:#x} stays out of use",
        fresh.frame().0,
        frame.0
    );
    let mut seen = [0u8; 10];
    held.read_only_mem()
        .ok_or("held mapping lost")?
        .read_bytes(0, &mut seen);
    ensure(
        &seen == b"guest data",
        "the hostile peer still sees the last contents",
    )?;
    println!(
        "[hostile] still reads {:?} from its mapping",
        String::from_utf8_lossy(&seen)
    );
    hostile.release(held).map_err(e)?;
    println!("[hostile] lets go");
    let r = gt.reclaim();
    ensure(
        r.ended.len() == 1 && r.still_busy == 0,
        "the queue drains once released",
    )?;
    ensure(
        r.ended[0].frame() == frame,
        "the reclaimed page is the one that was held",
    )?;
    let stats = gt.reclaim_queue().stats();
    println!(
        "[guest]   reclaim: frame {:#x} back; queue: {} pending, {} queued, {} reclaimed in all",
        frame.0, stats.pending, stats.queued_total, stats.reclaimed_total
    );
    let s = guest.stats();
    println!();
    println!(
        "summary: {} maps, {} refused, {} free grant refs, reclaim queue empty: {}",
        s.mapped,
        s.refused,
        gt.free_refs(),
        gt.reclaim_queue().is_empty()
    );
    vchan(&host)
}

/// A vchan between two more domains: 16 MiB client → server through a 64 KiB ring.
fn vchan(host: &Host) -> Result<(), String> {
    use std::time::{Duration, Instant};
    use xen_vchan::{ClientConfig, ServerConfig, connect, listen, vchan_path};
    let e = |e: xen_vchan::VchanError| e.to_string();
    println!();
    println!("== vchan ==");
    let (srv, cli) = (
        host.create_domain("vchan-srv"),
        host.create_domain("vchan-cli"),
    );
    let path = vchan_path(srv.domid(), cli.domid(), 1);
    let config = ServerConfig::new(path.clone(), 64 << 10, 4096).map_err(e)?;
    let l = listen(
        srv.grants(),
        srv.evtchn(),
        srv.xenstore(),
        cli.domid(),
        &config,
    )
    .map_err(e)?;
    let c = ClientConfig::new(path.clone());
    let mut c = connect(cli.mapper(), cli.evtchn(), cli.xenstore(), srv.domid(), &c).map_err(e)?;
    let mut s = l.accept(Duration::from_secs(5)).map_err(e)?;
    println!(
        "[server]  {path}: rings {} B in, {} B out; client connected",
        s.rx_size(),
        s.tx_size()
    );
    const TOTAL: usize = 16 << 20;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let (got, sum) = std::thread::scope(|sc| {
        sc.spawn(|| c.write_all(&data));
        let (mut got, mut sum, mut buf) = (0usize, 0u64, vec![0u8; 64 << 10]);
        while let Ok(n @ 1..) = s.read(&mut buf) {
            sum += buf[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
            got += n;
            if got == TOTAL {
                break;
            }
        }
        (got, sum)
    });
    let secs = start.elapsed().as_secs_f64();
    let want: u64 = data.iter().map(|&b| u64::from(b)).sum();
    ensure(got == TOTAL && sum == want, "the stream arrives whole")?;
    println!(
        "[client]  vchan: 16 MiB streamed in {:.0} ms ({:.2} GB/s), checksum ok",
        secs * 1e3,
        TOTAL as f64 / secs / 1e9
    );
    let report = c.close();
    let mut buf = [0u8; 1];
    ensure(
        s.read(&mut buf) == Ok(0),
        "the server sees the client close",
    )?;
    let closed = s.close();
    ensure(
        report.teardown.unmapped == 18 && closed.teardown.ended == 18,
        "every grant ends once unmapped",
    )?;
    println!(
        "[server]  client closed: end of stream; {} grants ended, xenstore entries removed: {}",
        closed.teardown.ended, closed.xenstore_removed
    );
    Ok(())
}
