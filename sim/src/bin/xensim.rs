//! `xensim`: the simulated Xen host on the command line.
//!
//! `xensim demo` runs a guest granting pages to a backend that maps them, then a hostile
//! backend that keeps a mapping while the grant waits in the reclaim queue (never reused),
//! and finally lets go. Every claim it prints is checked; a failed check exits with status 1.
#![deny(unsafe_code)]

use std::process::ExitCode;
use xen_gnttab::{ForeignMap, ForeignRef, Granted, Grantor, Page, ReadOnly, Writable};
use xen_sim::Host;

const USAGE: &str = "usage: xensim <command>

commands:
  demo    grant pages to a backend, then show a hostile backend that keeps a mapping
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
    held.mem()
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
    Ok(())
}
