//! `cargo xtask bench ring`: our ring against Xen's `ring.h` macros in C.
//!
//! Two threads, a frontend submitting batches (1, 8, 32 requests) and a backend answering,
//! on a one-page ring of netif tx entries (12 bytes) or blkif entries (112 bytes). The anchor
//! is `xtask/c/ring_bench.c`, the same workload with `/usr/include/xen/io/ring.h`, compiled
//! here with `cc -O2` into a shared object and called in this process. Both use the same
//! notification mechanism (a pending flag, release store / acquire exchange, spin with pause
//! and a yield every 256 spins). Rounds interleave ours and C; the figure per case is the
//! median over the rounds. Prints a table and `BENCH ring ratio=<lowest ours/C> goal=1.0`.

use std::hint::spin_loop;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;
use xen_gnttab::SharedRegion;
use xen_ring::{BackRing, FrontRing, Protocol};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const ROUNDS: usize = 7;

/// netif tx request (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct TxReq {
    gref: u32,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
}
/// netif tx response (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct TxRsp {
    id: u16,
    status: i16,
}
enum NetTx {}
impl Protocol for NetTx {
    type Request = TxReq;
    type Response = TxRsp;
    type Id = u16;
    fn set_request_id(r: &mut TxReq, id: u16) {
        r.id = id
    }
    fn request_id(r: &TxReq) -> u16 {
        r.id
    }
    fn set_response_id(r: &mut TxRsp, id: u16) {
        r.id = id
    }
    fn response_id(r: &TxRsp) -> u16 {
        r.id
    }
}

/// blkif request segment (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct Seg {
    gref: u32,
    first_sect: u8,
    last_sect: u8,
    pad: u16,
}
/// blkif request (112 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct BlkReq {
    operation: u8,
    nr_segments: u8,
    handle: u16,
    pad: u32,
    id: u64,
    sector: u64,
    seg: [Seg; 11],
}
/// blkif response (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct BlkRsp {
    id: u64,
    operation: u8,
    pad: u8,
    status: i16,
    pad2: u32,
}
enum Blk {}
impl Protocol for Blk {
    type Request = BlkReq;
    type Response = BlkRsp;
    type Id = u64;
    fn set_request_id(r: &mut BlkReq, id: u64) {
        r.id = id
    }
    fn request_id(r: &BlkReq) -> u64 {
        r.id
    }
    fn set_response_id(r: &mut BlkRsp, id: u64) {
        r.id = id
    }
    fn response_id(r: &BlkRsp) -> u64 {
        r.id
    }
}

/// A workload's requests and responses.
trait Workload: Protocol {
    fn request(k: u32, token: u32) -> Self::Request;
    fn answer(req: &Self::Request) -> Self::Response;
    fn ok(rsp: &Self::Response) -> bool;
}
impl Workload for NetTx {
    fn request(k: u32, token: u32) -> TxReq {
        TxReq {
            gref: token,
            size: k as u16,
            ..Default::default()
        }
    }
    fn answer(req: &TxReq) -> TxRsp {
        TxRsp {
            id: req.id,
            status: 0,
        }
    }
    fn ok(rsp: &TxRsp) -> bool {
        rsp.status == 0
    }
}
impl Workload for Blk {
    fn request(_k: u32, token: u32) -> BlkReq {
        let mut r = BlkReq {
            operation: 0,
            nr_segments: 1,
            sector: token.into(),
            ..Default::default()
        };
        r.seg[0] = Seg {
            gref: token,
            last_sect: 7,
            ..Default::default()
        };
        r
    }
    fn answer(req: &BlkReq) -> BlkRsp {
        BlkRsp {
            id: req.id,
            operation: req.operation,
            ..Default::default()
        }
    }
    fn ok(rsp: &BlkRsp) -> bool {
        rsp.status == 0
    }
}

/// The notification mechanism, identical to `ev_notify`/`ev_wait` in the C anchor.
#[repr(align(64))]
#[derive(Default)]
struct Event {
    pending: AtomicU32,
}
impl Event {
    fn notify(&self) {
        self.pending.store(1, Ordering::Release);
    }
    fn wait(&self) {
        let mut spins = 0u32;
        while self.pending.swap(0, Ordering::Acquire) == 0 {
            spin_loop();
            spins += 1;
            if spins % 256 == 0 {
                std::thread::yield_now();
            }
        }
    }
}

/// Runs our ring; returns (seconds, notifications).
fn ours<P: Workload>(batch: u32, iters: u64) -> Result<(f64, u64), String> {
    let mem = Arc::new(SharedRegion::new_zeroed(4096));
    // The in-flight value is a buffer token, as the C side's shadow entry.
    let mut front: FrontRing<P, _, u32> =
        FrontRing::new(mem.clone()).map_err(|(_, e)| e.to_string())?;
    let to_front = Arc::new(Event::default());
    let to_back = Arc::new(Event::default());
    let total = u64::from(batch) * iters;
    let start = Instant::now();
    let backend = {
        let (to_front, to_back) = (to_front.clone(), to_back.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut back: BackRing<P, _> = BackRing::attach(mem).map_err(|(_, e)| e.to_string())?;
            let (mut answered, mut notes) = (0u64, 0u64);
            while answered < total {
                // As the C backend: read req_prod once, answer that many, then push.
                answered += u64::from(
                    back.answer_requests(u32::MAX, |req| P::answer(&req))
                        .map_err(|e| e.to_string())?,
                );
                if back.push_responses().map_err(|e| e.to_string())?.needed() {
                    to_front.notify();
                    notes += 1;
                }
                if answered < total
                    && !back.final_check_for_requests().map_err(|e| e.to_string())?
                {
                    to_back.wait();
                }
            }
            Ok(notes)
        })
    };
    let mut notes = 0u64;
    let mut token = 0u32;
    let run = (|| -> Result<(), String> {
        for _ in 0..iters {
            let first = token;
            let sent = front
                .submit_batch(batch, |k| {
                    let token = first.wrapping_add(k);
                    (P::request(k, token), token)
                })
                .map_err(|e| e.to_string())?;
            if sent != batch {
                return Err("ring full".into());
            }
            token = token.wrapping_add(batch);
            if front.push_requests().map_err(|e| e.to_string())?.needed() {
                to_back.notify();
                notes += 1;
            }
            let mut got = 0;
            loop {
                // Like the C anchor, stop taking responses once the batch is in, without
                // reading rsp_prod once more.
                let mut ok = true;
                got += front
                    .poll_responses(batch - got, |rsp, _token| ok &= P::ok(&rsp))
                    .map_err(|e| e.to_string())?;
                if !ok {
                    return Err("bad status".into());
                }
                if got == batch {
                    break;
                }
                if !front
                    .final_check_for_responses()
                    .map_err(|e| e.to_string())?
                {
                    to_front.wait();
                }
            }
        }
        Ok(())
    })();
    let back_notes = backend
        .join()
        .map_err(|_| "backend panicked".to_string())??;
    let secs = start.elapsed().as_secs_f64();
    run?;
    Ok((secs, notes + back_notes))
}

#[derive(Clone, Copy)]
struct Case {
    entry: u32,
    batch: u32,
    iters: u64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the C anchor into `target/xtask-bench/libring_bench.so`.
fn build_c() -> Result<PathBuf, String> {
    super::anchor::build("ring_bench")
}

/// Entry point of `cargo xtask bench ring` (registered in `bench/mod.rs`).
pub fn run(_ws: &crate::cmd::Workspace, args: &[String]) -> crate::cmd::Result {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match main(&args) {
        0 => Ok(()),
        code => Err(format!("bench ring failed (exit status {code})")),
    }
}

/// Runs the benchmark, re-running itself from a release build first. Returns an exit code.
fn main(args: &[&str]) -> i32 {
    if cfg!(debug_assertions) && !args.contains(&"--in-release") {
        // The xtask alias builds in debug: re-run this command from a release build.
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "xtask",
                "--",
                "bench",
                "ring",
            ])
            .args(args)
            .arg("--in-release")
            .status();
        return match status {
            Ok(s) => s.code().unwrap_or(1),
            Err(e) => {
                eprintln!("bench ring: cannot run cargo: {e}");
                1
            }
        };
    }
    match run_cases() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench ring: {e}");
            1
        }
    }
}

fn run_cases() -> Result<(), String> {
    let so = build_c()?;
    let c = ffi::CBench::load(&so)?;
    let cases: Vec<Case> = [12u32, 112]
        .iter()
        .flat_map(|&entry| {
            [(1u32, 100_000u64), (8, 40_000), (32, 12_000)].map(|(batch, iters)| Case {
                entry,
                batch,
                iters,
            })
        })
        .collect();
    let mut ours_rate = vec![Vec::new(); cases.len()];
    let mut c_rate = vec![Vec::new(); cases.len()];
    let mut ours_notes = vec![0f64; cases.len()];
    let mut c_notes = vec![0f64; cases.len()];
    for round in 0..ROUNDS {
        for (i, case) in cases.iter().enumerate() {
            let requests = (u64::from(case.batch) * case.iters) as f64;
            // Alternate which goes first, so neither always runs on a warmer machine.
            for first_ours in [round % 2 == 0, round % 2 != 0] {
                if first_ours {
                    let (secs, notes) = match case.entry {
                        12 => ours::<NetTx>(case.batch, case.iters)?,
                        _ => ours::<Blk>(case.batch, case.iters)?,
                    };
                    ours_rate[i].push(requests / secs);
                    ours_notes[i] += notes as f64 / requests / ROUNDS as f64;
                } else {
                    let (secs, notes) = c.run(case.entry, case.batch, case.iters)?;
                    c_rate[i].push(requests / secs);
                    c_notes[i] += notes as f64 / requests / ROUNDS as f64;
                }
            }
        }
    }
    println!("ring benchmark: one-page ring, 2 threads, median of {ROUNDS} interleaved rounds");
    println!(
        "{:>6} {:>6} {:>14} {:>14} {:>11} {:>11} {:>7}",
        "entry", "batch", "ours rt/s", "C rt/s", "ours n/req", "C n/req", "ours/C"
    );
    let mut lowest = f64::INFINITY;
    for (i, case) in cases.iter().enumerate() {
        let (o, cc) = (median(&mut ours_rate[i]), median(&mut c_rate[i]));
        let ratio = o / cc;
        lowest = lowest.min(ratio);
        println!(
            "{:>6} {:>6} {:>14.0} {:>14.0} {:>11.4} {:>11.4} {:>7.3}",
            case.entry, case.batch, o, cc, ours_notes[i], c_notes[i], ratio
        );
    }
    println!("BENCH ring ratio={lowest:.3} goal=1.0");
    Ok(())
}

/// The unsafe code of this benchmark: the typed load of the C anchor and the call into it.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_int, c_long};
    use std::path::Path;

    type BenchFn = unsafe extern "C" fn(c_int, c_int, c_long, *mut c_long) -> f64;

    /// `c_ring_bench` from the loaded shared object (never unloaded).
    pub struct CBench {
        f: BenchFn,
    }


    impl CBench {
        pub fn load(path: &Path) -> Result<Self, String> {
            // SAFETY: `c_ring_bench` in xtask/c/ring_bench.c has exactly the signature `BenchFn` spells.
            let f = unsafe { crate::bench::anchor::load::<BenchFn>(path, c"c_ring_bench")? };
            Ok(CBench { f })
        }

        /// Runs the C workload; returns (seconds, notifications).
        pub fn run(&self, entry: u32, batch: u32, iters: u64) -> Result<(f64, u64), String> {
            let mut notes: c_long = 0;
            let entry = c_int::try_from(entry).map_err(|e| e.to_string())?;
            let batch = c_int::try_from(batch).map_err(|e| e.to_string())?;
            let iters = c_long::try_from(iters).map_err(|e| e.to_string())?;
            // SAFETY: the function takes plain integers and a pointer to a live `c_long` it
            // writes once; it joins its own thread before returning.
            let secs = unsafe { (self.f)(entry, batch, iters, &mut notes) };
            if secs < 0.0 {
                return Err("the C anchor reported a protocol error".into());
            }
            Ok((secs, notes as u64))
        }
    }
}
