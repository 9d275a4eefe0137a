//! `cargo xtask bench vchan`: one-direction throughput of a vchan between two threads,
//! against a Unix socketpair, a pipe and the physical limit.
//!
//! For ring sizes 2 KiB, 64 KiB and 1 MiB and write sizes 64 B, 2 KiB and 64 KiB, a client
//! in one simulated domain writes a byte stream and the server in another reads it into a
//! buffer of the write size, twice: with the plain calls (`write_all` / `read`, which take
//! the peer's notify request on every call behind a full barrier, as libxenvchan does) and
//! with the bulk-stream calls (`write_more` / `read_more`, which look at it once per half
//! ring and take it before any wait, look at the peer's index only when what they knew is
//! used up, and store their own only every publish lag).
//! The comparisons, in the same run, interleaved round by round:
//!
//! * a Unix socketpair and a pipe (default kernel buffers): what a program would otherwise
//!   use to move bytes between two of its parts;
//! * the limit of this design: `xtask/c/vchan_limit.c`, a minimal C single-producer
//!   single-consumer byte ring of the same size with the same two copies (private buffer to
//!   ring, ring to private buffer) and no notifications at all, its two indices next to
//!   each other in a 24-byte header as `struct vchan_interface` has them (column `C`);
//!   compiled here with `cc -O2` into a shared object and called in this process;
//! * the same C ring with each index in a cache line of its own (column `C pad`): a layout
//!   libxenvchan's ABI does not allow, printed to show what the shared header line costs.
//!
//! Every contender runs its writer on a second thread and its reader on the calling thread;
//! where the machine has two CPUs or more, the calling thread is pinned to CPU 0 and the
//! second thread to CPU 1, for all alike. Unpinned, the scheduler sometimes put both
//! threads on one CPU, where every hand-over of a small ring costs a sched_yield, and a case
//! swung between 0.3 and 5 GB/s from run to run for ours and the C limit alike.
//!
//! Arguments `RING:WRITE` (e.g. `64K:64`) run only those cases, `--rounds=N` sets the
//! number of rounds (default 5), `--no-pin` leaves the threads to the scheduler and
//! `--samples` prints every round's figures; the BENCH lines are printed only for a full
//! run.
//!
//! Prints GB/s per case (median of the rounds) and the ratios, ending with
//! `BENCH vchan-limit ratio=<lowest bulk/C> goal=0.8` and
//! `BENCH vchan-socketpair ratio=<bulk/socketpair at 1 MiB, 64 KiB> goal=2.0`; the lowest
//! ratios of the plain calls and against the padded ring are printed on the line before.
//!
//! The ratios against the C ring (`bulk/C`, `bulk/Cpad`) are paired: in every round the
//! bulk calls and the C ring run back to back (which goes first alternates), each round
//! gives one ratio, and the column is the median of those. On the two-vCPU machines this
//! runs on, one case's speed moves by 2x or more from one second to the next, for every
//! contender alike (where the host puts the two vCPUs: `--samples` shows rounds where all
//! contenders of a case drop to a fifth together); a ratio of medians taken seconds apart
//! measured that drift as much as the channel. The other ratios are of the medians.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use xen_sim::Host;
use xen_vchan::{ClientConfig, Options, ServerConfig, connect, listen, vchan_path};

const ROUNDS: usize = 5;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Bytes moved per case: enough for tens of milliseconds at the fastest (with 16 MiB, the
/// 64-byte cases of the rings and the C limit lasted about 5 ms, less than one scheduler
/// slice on a shared machine, and their medians swung 3x between runs), few enough that the
/// slowest (socket calls of 64 bytes, about 2 s) stays bearable.
fn total_for(write: usize) -> usize {
    match write {
        64 => 64 << 20,
        _ => 256 << 20,
    }
}

/// The client → server ring of `size` bytes; the other way gets an in-page ring that does not
/// collide with it (order 11 next to a 1 MiB ring, whose grant list reaches past byte 1024).
fn orders(size: usize) -> (u16, u16) {
    let order = size.trailing_zeros() as u16;
    (order, if order == 10 || order == 20 { 11 } else { 10 })
}

/// How our writer and reader call the channel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Calls {
    /// `write_all` and `read`: each call takes the peer's notify request (a full barrier
    /// per call), as libxenvchan's `libxenvchan_write`/`read` do.
    Plain,
    /// `write_more` and `read_more`, the bulk-stream calls: the index is stored for the peer
    /// every publish lag (a quarter of the smaller ring, at most 1 KiB), the peer's request
    /// is looked at once per half ring and taken before any wait, and both ends `flush`
    /// after their last byte.
    Bulk,
}

/// Our vchan: returns seconds.
fn ours(ring: usize, write: usize, total: usize, calls: Calls) -> Result<f64, String> {
    let host = Host::new();
    let _dom0 = host.create_domain("dom0");
    let srv = host.create_domain("server");
    let cli = host.create_domain("client");
    let path = vchan_path(srv.domid(), cli.domid(), 1);
    let (l, r) = orders(ring);
    let opts = Options {
        timeout: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let config = ServerConfig::with_orders(path.clone(), l, r)
        .map_err(|e| e.to_string())?
        .options(opts.clone());
    let listener = listen(srv.grants(), srv.evtchn(), srv.xenstore(), cli.domid(), &config)
        .map_err(|e| e.to_string())?;
    let mut client = connect(
        cli.mapper(),
        cli.evtchn(),
        cli.xenstore(),
        srv.domid(),
        &ClientConfig::new(path).options(opts),
    )
    .map_err(|e| e.to_string())?;
    let mut server = listener
        .accept(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if client.tx_size() != ring {
        return Err(format!("ring is {} bytes, not {ring}", client.tx_size()));
    }
    let src: Vec<u8> = (0..write).map(|i| (i * 7) as u8).collect();
    let start = Instant::now();
    std::thread::scope(|s| -> Result<(), String> {
        let writer = s.spawn(|| -> Result<(), String> {
            pin_second();
            let mut sent = 0;
            while sent < total {
                let n = write.min(total - sent);
                match calls {
                    Calls::Plain => client.write_all(&src[..n]).map_err(|e| e.to_string())?,
                    Calls::Bulk => {
                        let mut rest = &src[..n];
                        while !rest.is_empty() {
                            let k = client.write_more(rest).map_err(|e| e.to_string())?;
                            rest = &rest[k..];
                        }
                    }
                }
                sent += n;
            }
            client.flush().map_err(|e| e.to_string())
        });
        let mut buf = vec![0u8; write];
        let mut got = 0;
        let mut sum = 0u64;
        while got < total {
            let n = match calls {
                Calls::Plain => server.read(&mut buf),
                Calls::Bulk => server.read_more(&mut buf),
            }
            .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("end of stream".into());
            }
            sum = sum.wrapping_add(u64::from(buf[0]) + u64::from(buf[n - 1]));
            got += n;
        }
        server.flush().map_err(|e| e.to_string())?;
        std::hint::black_box(sum);
        writer.join().map_err(|_| "writer panicked".to_string())?
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// A byte stream over two file-like ends (socketpair, pipe): returns seconds.
fn stream<W: Write + Send, R: Read>(mut w: W, mut r: R, write: usize, total: usize) -> Result<f64, String> {
    let src: Vec<u8> = (0..write).map(|i| (i * 7) as u8).collect();
    let start = Instant::now();
    std::thread::scope(|s| -> Result<(), String> {
        let writer = s.spawn(move || -> Result<(), String> {
            pin_second();
            let mut sent = 0;
            while sent < total {
                let n = write.min(total - sent);
                w.write_all(&src[..n]).map_err(|e| e.to_string())?;
                sent += n;
            }
            Ok(())
        });
        let mut buf = vec![0u8; write];
        let mut got = 0;
        while got < total {
            let n = r.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("end of stream".into());
            }
            got += n;
        }
        writer.join().map_err(|_| "writer panicked".to_string())?
    })?;
    Ok(start.elapsed().as_secs_f64())
}

fn socketpair(write: usize, total: usize) -> Result<f64, String> {
    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    stream(a, b, write, total)
}

fn pipe(write: usize, total: usize) -> Result<f64, String> {
    let (r, w) = ffi::pipe()?;
    stream(w, r, write, total)
}

/// Whether the threads are pinned (set once, by `run_cases`).
static PINNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The CPU of the second thread (our writer; the C limit's reader), when pinning.
const SECOND_CPU: usize = 1;

/// Pins the calling (second) thread to `SECOND_CPU` if the benchmark pins.
fn pin_second() {
    if PINNED.load(std::sync::atomic::Ordering::Relaxed) {
        ffi::pin_to(SECOND_CPU);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds the C limit into `target/xtask-bench/libvchan_limit.so`.
fn build_c() -> Result<PathBuf, String> {
    super::anchor::build("vchan_limit")
}

/// Entry point of `cargo xtask bench vchan` (registered in `bench/mod.rs`).
pub fn run(_ws: &crate::cmd::Workspace, args: &[String]) -> crate::cmd::Result {
    if cfg!(debug_assertions) && !args.iter().any(|a| a == "--in-release") {
        // The xtask alias builds in debug: re-run this command from a release build.
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench", "vchan"])
            .args(args)
            .arg("--in-release")
            .status()
            .map_err(|e| format!("bench vchan: cannot run cargo: {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("bench vchan failed ({status})"))
        };
    }
    run_cases(args).map_err(|e| format!("bench vchan: {e}"))
}

/// Parses `2K`, `64K`, `1M` or a plain byte count.
fn parse_size(s: &str) -> Option<usize> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        _ => (s, 0),
    };
    num.parse::<usize>().ok().map(|n| n << shift)
}

fn gbs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn run_cases(args: &[String]) -> Result<(), String> {
    let rings = [2usize << 10, 64 << 10, 1 << 20];
    let writes = [64usize, 2 << 10, 64 << 10];
    let mut rounds = ROUNDS;
    let mut only = Vec::new();
    let mut pin = true;
    let mut samples = false;
    for a in args.iter().filter(|a| *a != "--in-release") {
        if a == "--no-pin" {
            pin = false;
            continue;
        }
        if a == "--samples" {
            samples = true;
            continue;
        }
        if let Some(n) = a.strip_prefix("--rounds=") {
            rounds = n.parse().map_err(|_| format!("bad round count `{n}`"))?;
            continue;
        }
        let case = a
            .split_once(':')
            .and_then(|(r, w)| Some((parse_size(r)?, parse_size(w)?)))
            .filter(|(r, w)| rings.contains(r) && writes.contains(w))
            .ok_or_else(|| format!("unknown argument `{a}` (want RING:WRITE, e.g. 64K:64)"))?;
        only.push(case);
    }
    let full = only.is_empty();
    let cases: Vec<(usize, usize)> = if full {
        rings
            .iter()
            .flat_map(|&r| writes.iter().map(move |&w| (r, w)))
            .collect()
    } else {
        only
    };
    let c = ffi::CLimit::load(&build_c()?)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = pin && cpus >= 2 && ffi::pin_to(0);
    PINNED.store(pinned, std::sync::atomic::Ordering::Relaxed);
    // [ours, C limit, socketpair, pipe, ours bulk, C padded] per case.
    let mut rates = vec![[const { Vec::new() }; 6]; cases.len()];
    let cpu = pinned.then_some(SECOND_CPU);
    // Per case and round: bulk/C and bulk/C padded, each pair run back to back.
    let mut paired = vec![[const { Vec::new() }; 2]; cases.len()];
    for round in 0..rounds {
        for (i, &(ring, write)) in cases.iter().enumerate() {
            let total = total_for(write);
            // The bulk calls and the C limit run next to each other, in turns first: this
            // machine's speed for a case drifts by 2x or more over seconds (where the host
            // puts the two vCPUs), and a ratio of runs seconds apart measured the drift.
            let mut order = if round % 2 == 0 {
                [1usize, 4, 5, 0, 2, 3]
            } else {
                [4usize, 1, 5, 0, 2, 3]
            };
            if round % 4 >= 2 {
                // And the padded ring right before them, every other pair of rounds.
                order = [5, order[0], order[1], 0, 2, 3];
            }
            for k in order {
                let secs = match k {
                    0 => ours(ring, write, total, Calls::Plain)?,
                    1 => c.run(ring, write, total, cpu, true)?,
                    2 => socketpair(write, total)?,
                    3 => pipe(write, total)?,
                    4 => ours(ring, write, total, Calls::Bulk)?,
                    _ => c.run(ring, write, total, cpu, false)?,
                };
                rates[i][k].push(gbs(total, secs));
            }
            let r = &rates[i];
            let b = r[4][round];
            paired[i][0].push(b / r[1][round]);
            paired[i][1].push(b / r[5][round]);
            if samples {
                println!(
                    "  round {round} {}:{} bulk {b:.2} C {:.2} C pad {:.2} ours {:.2}",
                    size(ring),
                    size(write),
                    r[1][round],
                    r[5][round],
                    r[0][round]
                );
            }
        }
    }
    println!(
        "vchan benchmark: one direction, 2 threads{}, GB/s, median of {rounds} interleaved rounds",
        if pinned { " on CPUs 0 and 1" } else { "" }
    );
    println!(
        "{:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7}",
        "ring",
        "write",
        "ours",
        "bulk",
        "C",
        "C pad",
        "sockpr",
        "pipe",
        "ours/C",
        "bulk/C",
        "bulk/Cpad",
        "bulk/sp"
    );
    let mut lowest = f64::INFINITY;
    let mut lowest_plain = f64::INFINITY;
    let mut lowest_padded = f64::INFINITY;
    let mut sp_big = 0.0;
    for (i, &(ring, write)) in cases.iter().enumerate() {
        let [o, cl, sp, pp, b, cp] = [0, 1, 2, 3, 4, 5].map(|k| median(&mut rates[i][k]));
        let [b_cl, b_cp] = [0, 1].map(|k| median(&mut paired[i][k]));
        lowest = lowest.min(b_cl);
        lowest_plain = lowest_plain.min(o / cl);
        lowest_padded = lowest_padded.min(b_cp);
        if ring == 1 << 20 && write == 64 << 10 {
            sp_big = b / sp;
        }
        println!(
            "{:>6} {:>6} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.3} {:>7.3} {:>8.3} {:>7.2}",
            size(ring),
            size(write),
            o,
            b,
            cl,
            cp,
            sp,
            pp,
            o / cl,
            b_cl,
            b_cp,
            b / sp
        );
    }
    println!(
        "lowest: bulk/C {lowest:.3}, plain calls ours/C {lowest_plain:.3}, bulk/C padded {lowest_padded:.3}"
    );
    if full {
        println!("BENCH vchan-limit ratio={lowest:.3} goal=0.8");
        println!("BENCH vchan-socketpair ratio={sp_big:.3} goal=2.0");
    }
    Ok(())
}

fn size(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{}M", b >> 20)
    } else if b >= 1 << 10 {
        format!("{}K", b >> 10)
    } else {
        format!("{b}")
    }
}

/// The only unsafe code of this benchmark: loading the C limit and calling it, and making
/// a pipe.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_int, c_long};
    use std::fs::File;
    use std::os::fd::FromRawFd;
    use std::path::Path;

    unsafe extern "C" {
        #[link_name = "pipe"]
        fn c_pipe(fds: *mut c_int) -> c_int;
        fn sched_setaffinity(pid: c_int, size: usize, mask: *const u64) -> c_int;
    }

    /// Pins the calling thread to `cpu` (below 1024); false if the kernel refused.
    pub fn pin_to(cpu: usize) -> bool {
        // Linux's `cpu_set_t`: 1024 bits.
        let mut mask = [0u64; 16];
        let Some(word) = mask.get_mut(cpu / 64) else {
            return false;
        };
        *word = 1 << (cpu % 64);
        // SAFETY: pid 0 is the calling thread; `mask` is a live, initialised 128-byte set,
        // which is the size passed, and the kernel only reads it.
        unsafe { sched_setaffinity(0, core::mem::size_of_val(&mask), mask.as_ptr()) == 0 }
    }

    type LimitFn = unsafe extern "C" fn(c_long, c_long, c_long, c_long, c_long) -> f64;

    /// `c_vchan_limit` from the loaded shared object (never unloaded).
    pub struct CLimit {
        f: LimitFn,
    }


    impl CLimit {
        pub fn load(path: &Path) -> Result<Self, String> {
            // SAFETY: `c_vchan_limit` in xtask/c/vchan_limit.c has exactly the signature `LimitFn` spells.
            let f = unsafe { crate::bench::anchor::load::<LimitFn>(path, c"c_vchan_limit")? };
            Ok(CLimit { f })
        }

        /// Moves `total` bytes in `write`-byte writes through a `ring`-byte ring, the reader
        /// thread on `reader_cpu` if given, the indices in the vchan header's one cache line
        /// (`vchan_layout`) or in lines of their own; seconds.
        pub fn run(
            &self,
            ring: usize,
            write: usize,
            total: usize,
            reader_cpu: Option<usize>,
            vchan_layout: bool,
        ) -> Result<f64, String> {
            let arg = |v: usize| c_long::try_from(v).map_err(|e| e.to_string());
            let (ring, write, total) = (arg(ring)?, arg(write)?, arg(total)?);
            let cpu = reader_cpu.map_or(Ok(-1), arg)?;
            // SAFETY: the function takes plain integers; it allocates, runs and joins its
            // own reader thread and frees everything before returning.
            let secs = unsafe { (self.f)(ring, write, total, cpu, c_long::from(vchan_layout)) };
            if secs < 0.0 {
                return Err("the C limit could not set up".into());
            }
            Ok(secs)
        }
    }

    /// An anonymous pipe: (read end, write end).
    pub fn pipe() -> Result<(File, File), String> {
        let mut fds: [c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a live array of two ints, which pipe(2) fills on success.
        if unsafe { c_pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: pipe(2) succeeded, so both are fresh descriptors owned by nobody else;
        // each `File` takes sole ownership of one and closes it on drop.
        Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
    }
}
