//! The vchan interop tests of `cargo xtask realxen`, run by dom0's init on real Xen: our
//! `xen-vchan` tool against libxenvchan (`vchanpeer`, a C peer the harness builds against
//! Debian's libxenvchan) both ways, ours against ours with throughput next to libxenvchan's in
//! the same boot, the stdio and Unix-socket bridges, and a peer killed mid-transfer.
//!
//! ```text
//! xen-vchan-realxen [DIR]     # DIR holds xen-vchan and vchanpeer (default /bin)
//! ```
//!
//! Prints `REALXEN-TEST <name> PASS (<ms> ms)` / `REALXEN-TEST <name> FAIL: <why>` and
//! `REALXEN-INFO` lines; exit status 1 if a test failed. Everything runs in one domain
//! (dom0 to dom0).

#[cfg(target_os = "linux")]
mod suite {
    use std::io::{Read, Write};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    /// Bytes each way in the transfer tests.
    const BIG: u64 = 64 << 20;
    /// A transfer long enough to be killed in the middle.
    const HUGE: u64 = 1 << 40;
    /// How long a survivor may take to notice a killed peer (far below its own timeout).
    const NOTICE: Duration = Duration::from_secs(15);

    struct Bins {
        ours: String,
        peer: String,
    }

    /// A child with its stderr collected in a thread.
    struct Proc {
        name: &'static str,
        child: Child,
        err: Option<std::thread::JoinHandle<String>>,
    }

    impl Proc {
        fn start(name: &'static str, bin: &str, args: &[String]) -> Result<Proc, String> {
            Self::start_with(name, bin, args, Stdio::null(), Stdio::null())
        }

        fn start_with(
            name: &'static str,
            bin: &str,
            args: &[String],
            stdin: Stdio,
            stdout: Stdio,
        ) -> Result<Proc, String> {
            let mut child = Command::new(bin)
                .args(args)
                .stdin(stdin)
                .stdout(stdout)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("start {bin}: {e}"))?;
            let mut e = child.stderr.take();
            let err = std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(e) = e.as_mut() {
                    let _ = e.read_to_string(&mut s);
                }
                s
            });
            Ok(Proc {
                name,
                child,
                err: Some(err),
            })
        }

        /// Waits up to `limit`; kills it after that. Returns the status (None: killed by
        /// us) and its stderr.
        fn finish(mut self, limit: Duration) -> (Option<ExitStatus>, String) {
            let end = Instant::now() + limit;
            let status = loop {
                match self.child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break None;
                    }
                }
            };
            let err = self
                .err
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default();
            (status, err.trim().replace('\n', " | "))
        }

        /// Requires a clean exit within `limit`.
        fn ok(self, limit: Duration) -> Result<String, String> {
            let name = self.name;
            match self.finish(limit) {
                (Some(s), err) if s.success() => Ok(err),
                (Some(s), err) => Err(format!("{name} failed ({s}): {err}")),
                (None, err) => Err(format!("{name} still running after {limit:?}: {err}")),
            }
        }
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn path(n: u32) -> String {
        format!("/local/domain/0/data/vchan/0/{n}")
    }

    /// Ours as server, libxenvchan as client (or the reverse): `BIG` bytes each way.
    fn both_ways(b: &Bins, ours_server: bool, n: u32) -> Result<String, String> {
        let p = path(n);
        let big = BIG.to_string();
        let ours_args = |mode: &str| {
            let mut a = args(&[mode, "--send-pattern", &big, "--expect-pattern", &big]);
            if mode == "server" {
                a.extend(args(&["--left", "65536", "--right", "65536"]));
            }
            a.extend(args(&["0", &p]));
            a
        };
        let (srv, cli) = if ours_server {
            let s = Proc::start("xen-vchan server", &b.ours, &ours_args("server"))?;
            std::thread::sleep(Duration::from_millis(300));
            let c = Proc::start(
                "vchanpeer client",
                &b.peer,
                &args(&["client", "0", &p, &big, &big]),
            )?;
            (s, c)
        } else {
            let s = Proc::start(
                "vchanpeer server",
                &b.peer,
                &args(&["server", "0", &p, &big, &big, "65536"]),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            let c = Proc::start("xen-vchan client", &b.ours, &ours_args("client"))?;
            (s, c)
        };
        let c = cli.ok(Duration::from_secs(180))?;
        let s = srv.ok(Duration::from_secs(30))?;
        Ok(format!("server: {s} / client: {c}"))
    }

    /// The receive rate a peer printed (`..., 12.3 MB/s`).
    fn mbps(err: &str) -> Result<f64, String> {
        err.split(" MB/s")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no rate in {err:?}"))
    }

    /// The counters a peer printed: ours `N notifies sent, W waits, ...`, the C peer's
    /// `W waits` (libxenvchan keeps no count of its notifies).
    fn counters(err: &str) -> &str {
        err.split(" | ")
            .find(|l| l.contains(" waits"))
            .map_or("", |l| {
                l.trim_start_matches("xen-vchan: ")
                    .trim_start_matches("vchanpeer: ")
            })
    }

    /// One-way `BIG` bytes, server to client, with `ring`-byte rings; the receiver's rate
    /// and, for ours, both ends' counters.
    fn one_way(b: &Bins, ours: bool, ring: usize, n: u32) -> Result<(f64, String), String> {
        let p = path(n);
        let big = BIG.to_string();
        let ring = ring.to_string();
        let (srv, cli) = if ours {
            let s = Proc::start(
                "xen-vchan server",
                &b.ours,
                &args(&[
                    "server",
                    "--left",
                    &ring,
                    "--right",
                    &ring,
                    "--send-pattern",
                    &big,
                    "0",
                    &p,
                ]),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            let c = Proc::start(
                "xen-vchan client",
                &b.ours,
                &args(&["client", "--expect-pattern", &big, "0", &p]),
            )?;
            (s, c)
        } else {
            let s = Proc::start(
                "vchanpeer server",
                &b.peer,
                &args(&["server", "0", &p, &big, "0", &ring]),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            let c = Proc::start(
                "vchanpeer client",
                &b.peer,
                &args(&["client", "0", &p, "0", &big]),
            )?;
            (s, c)
        };
        let c = cli.ok(Duration::from_secs(180))?;
        let s = srv.ok(Duration::from_secs(30))?;
        let detail = format!("sender: {}; receiver: {}", counters(&s), counters(&c));
        Ok((mbps(&c)?, detail))
    }

    /// Transfers per implementation in a throughput test, alternating ours and libxenvchan.
    const ROUNDS: u32 = 3;

    /// Ours against ours and libxenvchan against libxenvchan, `ring`-byte rings, same boot:
    /// [`ROUNDS`] transfers each, alternating, and the best of each compared (the emulator
    /// shares the host with other work, and a disturbance slows whichever transfer it hits).
    fn throughput(b: &Bins, ring: usize, n: u32) -> Result<String, String> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut detail, mut their_detail) = (String::new(), String::new());
        for r in 0..ROUNDS {
            let (rate, d) = one_way(b, true, ring, n * 100 + 2 * r)?;
            if ours.iter().all(|x| rate > *x) {
                detail = d;
            }
            ours.push(rate);
            let (rate, d) = one_way(b, false, ring, n * 100 + 2 * r + 1)?;
            if theirs.iter().all(|x| rate > *x) {
                their_detail = d;
            }
            theirs.push(rate);
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        let (o, t) = (best(&ours), best(&theirs));
        let line = format!(
            "vchan throughput dom0->dom0, {} KiB rings, 64 MiB verified, best of {ROUNDS}: ours {o:.1} MB/s, libxenvchan {t:.1} MB/s (ratio {:.2}; rounds ours {}, libxenvchan {}); ours: {detail}; libxenvchan: {their_detail}",
            ring / 1024,
            o / t,
            list(&ours),
            list(&theirs)
        );
        println!("REALXEN-INFO {line}");
        Ok(line)
    }

    /// The survivor is `ours` or libxenvchan, as `role`; the other process is killed
    /// (SIGKILL) mid-transfer. The survivor must exit with an error that says the peer
    /// closed, within `NOTICE`, with its own timeout far longer.
    fn killed(
        b: &Bins,
        ours_survives: bool,
        survivor_server: bool,
        n: u32,
    ) -> Result<String, String> {
        let p = path(n);
        let huge = HUGE.to_string();
        let ours = |mode: &str, send: bool| {
            let dir = if send {
                "--send-pattern"
            } else {
                "--expect-pattern"
            };
            args(&[mode, "--timeout", "600", dir, &huge, "0", &p])
        };
        let theirs = |mode: &str, send: bool| {
            let (s, e) = if send {
                (huge.as_str(), "0")
            } else {
                ("0", huge.as_str())
            };
            args(&[mode, "0", &p, s, e])
        };
        // The server sends, the client receives.
        let (srv_bin, srv_args, cli_bin, cli_args) = match (ours_survives, survivor_server) {
            (true, true) | (false, false) => (
                &b.ours,
                ours("server", true),
                &b.peer,
                theirs("client", false),
            ),
            _ => (
                &b.peer,
                theirs("server", true),
                &b.ours,
                ours("client", false),
            ),
        };
        let srv = Proc::start("server", srv_bin, &srv_args)?;
        std::thread::sleep(Duration::from_millis(300));
        let cli = Proc::start("client", cli_bin, &cli_args)?;
        std::thread::sleep(Duration::from_secs(3));
        let (mut victim, survivor) = if survivor_server {
            (cli, srv)
        } else {
            (srv, cli)
        };
        if let Ok(Some(s)) = victim.child.try_wait() {
            let (_, err) = victim.finish(Duration::ZERO);
            return Err(format!("the victim ended before the kill ({s}): {err}"));
        }
        let killed_at = Instant::now();
        victim.child.kill().map_err(|e| format!("kill: {e}"))?;
        let _ = victim.finish(Duration::from_secs(5));
        match survivor.finish(NOTICE) {
            (None, err) => Err(format!(
                "the survivor hung: still running {NOTICE:?} after the kill: {err}"
            )),
            (Some(s), err) if s.success() => Err(format!("the survivor claims success: {err}")),
            (Some(_), err) if err.contains("closed") => Ok(format!(
                "survivor failed {} ms after the kill: {err}",
                killed_at.elapsed().as_millis()
            )),
            (Some(s), err) => Err(format!(
                "the survivor failed ({s}) but not because the peer closed: {err}"
            )),
        }
    }

    /// Our bridge on stdin/stdout, server side, with a libxenvchan client: `len` bytes of
    /// the pattern each way.
    fn bridge_stdio(b: &Bins, n: u32) -> Result<String, String> {
        const LEN: u64 = 4 << 20;
        let p = path(n);
        let len = LEN.to_string();
        let mut srv = Proc::start_with(
            "xen-vchan server (stdio)",
            &b.ours,
            &args(&["server", "0", &p]),
            Stdio::piped(),
            Stdio::piped(),
        )?;
        let mut input = srv.child.stdin.take().ok_or("no stdin")?;
        let mut output = srv.child.stdout.take().ok_or("no stdout")?;
        std::thread::sleep(Duration::from_millis(300));
        let cli = Proc::start(
            "vchanpeer client",
            &b.peer,
            &args(&["client", "0", &p, &len, &len]),
        )?;
        let feeder = std::thread::spawn(move || {
            let data: Vec<u8> = (0..LEN).map(pattern).collect();
            let r = input.write_all(&data);
            drop(input);
            r
        });
        let mut got = Vec::new();
        output
            .read_to_end(&mut got)
            .map_err(|e| format!("reading the bridge: {e}"))?;
        let c = cli.ok(Duration::from_secs(60))?;
        srv.ok(Duration::from_secs(30))?;
        feeder
            .join()
            .map_err(|_| "feeder panicked".to_owned())?
            .map_err(|e| format!("feeding the bridge: {e}"))?;
        check(&got, LEN)?;
        Ok(format!(
            "{LEN} bytes each way through stdin/stdout; client: {c}"
        ))
    }

    /// Our bridge on a Unix socket, client side (listening), with a libxenvchan server.
    fn bridge_socket(b: &Bins, n: u32) -> Result<String, String> {
        const LEN: u64 = 4 << 20;
        let p = path(n);
        let len = LEN.to_string();
        let sock = format!("/tmp/xen-vchan-{n}.sock");
        let srv = Proc::start(
            "vchanpeer server",
            &b.peer,
            &args(&["server", "0", &p, &len, &len, "65536"]),
        )?;
        let cli = Proc::start(
            "xen-vchan client (socket)",
            &b.ours,
            &args(&["client", "0", &p, &sock]),
        )?;
        let end = Instant::now() + Duration::from_secs(20);
        let s = loop {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() > end => return Err(format!("connect {sock}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let feeder = std::thread::spawn(move || {
            let data: Vec<u8> = (0..LEN).map(pattern).collect();
            w.write_all(&data)
        });
        let mut got = Vec::new();
        let mut r = s;
        r.read_to_end(&mut got)
            .map_err(|e| format!("reading the socket: {e}"))?;
        let sv = srv.ok(Duration::from_secs(60))?;
        cli.ok(Duration::from_secs(30))?;
        feeder
            .join()
            .map_err(|_| "feeder panicked".to_owned())?
            .map_err(|e| format!("feeding the socket: {e}"))?;
        check(&got, LEN)?;
        Ok(format!("{LEN} bytes each way through {sock}; server: {sv}"))
    }

    fn pattern(i: u64) -> u8 {
        (i.wrapping_mul(7).wrapping_add(i >> 11).wrapping_add(13)) as u8
    }

    fn check(got: &[u8], len: u64) -> Result<(), String> {
        if got.len() as u64 != len {
            return Err(format!(
                "{} bytes came out of the bridge, not {len}",
                got.len()
            ));
        }
        match got
            .iter()
            .enumerate()
            .find(|(i, b)| **b != pattern(*i as u64))
        {
            Some((i, _)) => Err(format!("byte {i} of the bridge's output differs")),
            None => Ok(()),
        }
    }

    pub fn main() -> std::process::ExitCode {
        let dir = std::env::args().nth(1).unwrap_or_else(|| "/bin".into());
        let b = Bins {
            ours: format!("{dir}/xen-vchan"),
            peer: format!("{dir}/vchanpeer"),
        };
        type Test<'a> = (&'static str, Box<dyn Fn() -> Result<String, String> + 'a>);
        let tests: Vec<Test> = vec![
            (
                "vchan_ours_server_libxenvchan_client_64MiB_each_way",
                Box::new(|| both_ways(&b, true, 1)),
            ),
            (
                "vchan_libxenvchan_server_ours_client_64MiB_each_way",
                Box::new(|| both_ways(&b, false, 2)),
            ),
            (
                "vchan_bridge_stdio_ours_server_libxenvchan_client",
                Box::new(|| bridge_stdio(&b, 3)),
            ),
            (
                "vchan_bridge_socket_ours_client_libxenvchan_server",
                Box::new(|| bridge_socket(&b, 4)),
            ),
            (
                "vchan_throughput_64KiB_rings",
                Box::new(|| throughput(&b, 64 << 10, 10)),
            ),
            (
                "vchan_throughput_1MiB_rings",
                Box::new(|| throughput(&b, 1 << 20, 12)),
            ),
            (
                "vchan_killed_client_ours_server_notices",
                Box::new(|| killed(&b, true, true, 20)),
            ),
            (
                "vchan_killed_server_ours_client_notices",
                Box::new(|| killed(&b, true, false, 21)),
            ),
            (
                "vchan_killed_ours_server_libxenvchan_notices",
                Box::new(|| killed(&b, false, false, 22)),
            ),
            (
                "vchan_killed_ours_client_libxenvchan_notices",
                Box::new(|| killed(&b, false, true, 23)),
            ),
        ];
        let mut failed = 0;
        for (name, t) in &tests {
            let start = Instant::now();
            match t() {
                Ok(detail) => {
                    println!("REALXEN-INFO {name}: {detail}");
                    println!(
                        "REALXEN-TEST {name} PASS ({} ms)",
                        start.elapsed().as_millis()
                    );
                }
                Err(why) => {
                    failed += 1;
                    println!("REALXEN-TEST {name} FAIL: {why}");
                }
            }
        }
        if failed == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    suite::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("xen-vchan-realxen runs inside a Linux Xen dom0");
}
