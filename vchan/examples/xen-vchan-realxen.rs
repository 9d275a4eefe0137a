//! The vchan interop tests of `cargo xtask realxen`, run by dom0's init on real Xen: our
//! `xen-vchan` tool against libxenvchan (`vchanpeer`, a C peer the harness builds against
//! Debian's libxenvchan) both ways, ours against ours with throughput next to libxenvchan's in
//! the same boot, the stdio and Unix-socket bridges, and a peer killed mid-transfer.
//!
//! ```text
//! xen-vchan-realxen [DIR] [--domu CFG]   # in dom0; DIR holds xen-vchan and vchanpeer (/bin)
//! xen-vchan-realxen --guest [DIR]        # in the domU: the agent that runs its side
//! ```
//!
//! Prints `REALXEN-TEST <name> PASS (<ms> ms)` / `REALXEN-TEST <name> FAIL: <why>` and
//! `REALXEN-INFO` lines; exit status 1 if a test failed. The `vchan_domU_*` tests run across
//! domains: the suite starts a PV domU with `xl create CFG` (the harness writes the config and
//! the domU's initramfs), whose init runs this binary as an agent. Dom0 hands the agent jobs
//! through xenstore (`/local/domain/<domU>/data/realxen/job/<n>` = `<limit> <tool> <args>`),
//! the agent runs `xen-vchan` or `vchanpeer` and writes back `done/<n>` (status line, then
//! the stderr tail); `kill/<n>` stops a job. Every wait on either side is bounded. Without
//! `--domu` the domU tests fail, saying so.

#[cfg(target_os = "linux")]
mod suite {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use xen_linux::{TxId, Xenbus};

    /// Bytes each way in the transfer tests.
    const BIG: u64 = 64 << 20;
    /// A transfer long enough to be killed in the middle.
    const HUGE: u64 = 1 << 40;
    /// How long a survivor may take to notice a killed peer (far below its own timeout).
    const NOTICE: Duration = Duration::from_secs(15);
    /// How long a client may take for its transfer.
    const CLIENT_LIMIT: Duration = Duration::from_secs(180);
    /// How long a server may take after its client finished.
    const SERVER_LIMIT: Duration = Duration::from_secs(30);
    /// How long a server may take to publish its xenstore entries.
    const PUBLISH_LIMIT: Duration = Duration::from_secs(30);
    /// How long the domU may take from `xl create` until its agent is ready.
    const DOMU_BOOT_LIMIT: Duration = Duration::from_secs(120);
    /// The agent's own limit on one job (a backstop: dom0 kills jobs it gave up on).
    const AGENT_JOB_LIMIT: u64 = 300;
    /// The agent's directory under `/local/domain/<domU>/`.
    const AGENT_DIR: &str = "data/realxen";
    /// Where xenconsoled logs a guest's console (`--log=guest`).
    const CONSOLE_LOGS: &str = "/var/log/xen/console";

    /// A child with its stderr collected in a thread.
    struct Proc {
        name: String,
        child: Child,
        err: Option<std::thread::JoinHandle<String>>,
    }

    impl Proc {
        fn start(name: impl Into<String>, bin: &str, args: &[String]) -> Result<Proc, String> {
            Self::start_with(name, bin, args, Stdio::null(), Stdio::null())
        }

        fn start_with(
            name: impl Into<String>,
            bin: &str,
            args: &[String],
            stdin: Stdio,
            stdout: Stdio,
        ) -> Result<Proc, String> {
            let name = name.into();
            let mut child = Command::new(bin)
                .args(args)
                .stdin(stdin)
                .stdout(stdout)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{name}: start {bin}: {e}"))?;
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
        fn finish(self, limit: Duration) -> (Option<ExitStatus>, String) {
            self.finish_unless(limit, None)
        }

        /// [`finish`](Self::finish), also killing it as soon as `stop` is set.
        fn finish_unless(
            mut self,
            limit: Duration,
            stop: Option<&AtomicBool>,
        ) -> (Option<ExitStatus>, String) {
            let end = Instant::now() + limit;
            let status = loop {
                match self.child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None)
                        if Instant::now() < end
                            && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) =>
                    {
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
            let name = self.name.clone();
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
        vchan_path(0, 0, n)
    }

    /// The conventional place of a channel: `/local/domain/<server>/data/vchan/<client>/<n>`.
    fn vchan_path(server: u32, client: u32, n: u32) -> String {
        format!("/local/domain/{server}/data/vchan/{client}/{n}")
    }

    fn xs_err(what: String) -> impl FnOnce(xen_linux::Error) -> String {
        move |e| format!("{what}: {e}")
    }

    /// Which domain a process runs in.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Dom {
        Zero,
        U,
    }

    impl Dom {
        fn name(self) -> &'static str {
            match self {
                Dom::Zero => "dom0",
                Dom::U => "domU",
            }
        }
    }

    /// Which implementation.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Tool {
        /// The `xen-vchan` tool.
        Ours,
        /// `vchanpeer`, over libxenvchan.
        Theirs,
    }

    impl Tool {
        fn file(self) -> &'static str {
            match self {
                Tool::Ours => "xen-vchan",
                Tool::Theirs => "vchanpeer",
            }
        }
    }

    /// What the tests run with: the tools' directory in dom0, dom0's xenstore connection
    /// and the domU (or why there is none).
    struct Env {
        dir: String,
        xs: Result<Xenbus, String>,
        domu: Result<Domu, String>,
    }

    impl Env {
        fn bin(&self, t: Tool) -> String {
            format!("{}/{}", self.dir, t.file())
        }

        fn domu(&self) -> Result<&Domu, String> {
            self.domu.as_ref().map_err(|e| format!("no domU: {e}"))
        }

        fn id(&self, d: Dom) -> Result<u32, String> {
            match d {
                Dom::Zero => Ok(0),
                Dom::U => Ok(self.domu()?.id),
            }
        }

        /// Starts `tool` with `args` in `dom`, named after where it runs and its `role`.
        fn start(
            &self,
            dom: Dom,
            tool: Tool,
            role: &str,
            a: &[String],
        ) -> Result<Side<'_>, String> {
            let name = format!("{} {} {role}", dom.name(), tool.file());
            match dom {
                Dom::Zero => Ok(Side::Local(Proc::start(name, &self.bin(tool), a)?)),
                Dom::U => Ok(Side::Remote(self.domu()?.spawn(name, tool.file(), a)?)),
            }
        }

        /// Waits (bounded) until the server has published `<p>/event-channel`; a server that
        /// ends first or takes too long is stopped and its output returned as the error.
        fn published<'a>(&self, p: &str, mut srv: Side<'a>) -> Result<Side<'a>, String> {
            let xs = self.xs.as_ref().map_err(|e| e.clone())?;
            let key = format!("{p}/event-channel");
            let end = Instant::now() + PUBLISH_LIMIT;
            loop {
                if xs.read(TxId::NONE, &key).is_ok() {
                    return Ok(srv);
                }
                if srv.ended() {
                    return Err(match srv.ok(Duration::ZERO) {
                        Ok(err) => format!("the server ended before its client came: {err}"),
                        Err(e) => e,
                    });
                }
                if Instant::now() > end {
                    let err = srv.ok(Duration::ZERO).err().unwrap_or_default();
                    return Err(format!(
                        "no {key} within {PUBLISH_LIMIT:?}; the server was stopped: {err}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// Starts the server, waits for its entries under `p`, starts the client and waits
        /// for both: their stderr, or why they failed (both sides' reasons).
        fn transfer(
            &self,
            p: &str,
            server: (Dom, Tool, Vec<String>),
            client: (Dom, Tool, Vec<String>),
        ) -> Result<(String, String), String> {
            let srv = self.start(server.0, server.1, "server", &server.2)?;
            let srv = self.published(p, srv)?;
            let cli = match self.start(client.0, client.1, "client", &client.2) {
                Ok(c) => c,
                Err(e) => {
                    let s = srv.ok(Duration::ZERO).err().unwrap_or_default();
                    return Err(format!("{e}; {s}"));
                }
            };
            let c = cli.ok(CLIENT_LIMIT);
            let s = srv.ok(if c.is_ok() {
                SERVER_LIMIT
            } else {
                Duration::from_secs(5)
            });
            match (s, c) {
                (Ok(s), Ok(c)) => Ok((s, c)),
                (Err(s), Err(c)) => Err(format!("{c}; {s}")),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            }
        }
    }

    /// A process in dom0 or, through the agent, in the domU.
    enum Side<'a> {
        Local(Proc),
        Remote(Remote<'a>),
    }

    impl Side<'_> {
        fn ended(&mut self) -> bool {
            match self {
                Side::Local(p) => matches!(p.child.try_wait(), Ok(Some(_))),
                Side::Remote(r) => r.domu.done(r.n).is_some(),
            }
        }

        /// Requires a clean exit within `limit`: its stderr, or why not.
        fn ok(self, limit: Duration) -> Result<String, String> {
            match self {
                Side::Local(p) => p.ok(limit),
                Side::Remote(r) => r.ok(limit),
            }
        }
    }

    /// The PV domU started with `xl create`, and its agent.
    struct Domu {
        id: u32,
        name: String,
        xs: Xenbus,
        base: String,
        next: Cell<u32>,
    }

    /// The `name = "..."` of an xl config.
    fn cfg_name(cfg: &str) -> Option<String> {
        cfg.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_owned())
        })
    }

    /// The last `n` lines of a guest's console log, joined with ` | `.
    fn console_tail(name: &str, n: usize) -> String {
        let file = format!("{CONSOLE_LOGS}/guest-{name}.log");
        match std::fs::read_to_string(&file) {
            Ok(s) => {
                let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
                lines[lines.len().saturating_sub(n)..].join(" | ")
            }
            Err(e) => format!("({file}: {e})"),
        }
    }

    /// A domU whose `xl create` is running.
    struct Booting {
        name: String,
        xl: Proc,
        since: Instant,
    }

    impl Booting {
        /// Starts `xl create cfg` and returns at once.
        fn start(cfg: &str) -> Result<Booting, String> {
            let text = std::fs::read_to_string(cfg).map_err(|e| format!("{cfg}: {e}"))?;
            let name = cfg_name(&text).ok_or_else(|| format!("{cfg} has no name"))?;
            let xl = Proc::start("xl create", "xl", &args(&["create", cfg]))?;
            Ok(Booting {
                name,
                xl,
                since: Instant::now(),
            })
        }

        /// Waits (bounded) for `xl create`, then for the agent's `ready`.
        fn ready(self) -> Result<Domu, String> {
            let name = self.name;
            self.xl
                .ok(Duration::from_secs(60))
                .map_err(|e| format!("{e}; console: {}", console_tail(&name, 5)))?;
            Domu::attach(name, self.since + DOMU_BOOT_LIMIT)
        }
    }

    impl Domu {
        /// Finds the domain `name` and waits until `end` for its agent's `ready`.
        fn attach(name: String, end: Instant) -> Result<Domu, String> {
            let xs = Xenbus::open().map_err(|e| format!("dom0 xenbus: {e}"))?;
            let id = xs
                .directory(TxId::NONE, "/local/domain")
                .map_err(xs_err("listing /local/domain".into()))?
                .iter()
                .filter_map(|d| d.parse::<u32>().ok())
                .find(|d| {
                    xs.read(TxId::NONE, &format!("/local/domain/{d}/name"))
                        .is_ok_and(|v| v == name.as_bytes())
                })
                .ok_or_else(|| {
                    format!("xl created {name}, but xenstore has no domain of that name")
                })?;
            let base = format!("/local/domain/{id}/{AGENT_DIR}");
            let domu = Domu {
                id,
                name,
                xs,
                base,
                next: Cell::new(1),
            };
            while domu
                .xs
                .read(TxId::NONE, &format!("{}/ready", domu.base))
                .is_err()
            {
                if Instant::now() > end {
                    let why = format!(
                        "the agent in domain {id} was not ready within {DOMU_BOOT_LIMIT:?}; console: {}",
                        console_tail(&domu.name, 8)
                    );
                    domu.destroy();
                    return Err(why);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(domu)
        }

        /// Hands the agent a job: `file` (a tool in its directory) with `a`.
        fn spawn(&self, name: String, file: &str, a: &[String]) -> Result<Remote<'_>, String> {
            let n = self.next.get();
            self.next.set(n + 1);
            let job = format!("{AGENT_JOB_LIMIT} {file} {}", a.join(" "));
            self.xs
                .write(
                    TxId::NONE,
                    &format!("{}/job/{n}", self.base),
                    job.as_bytes(),
                )
                .map_err(xs_err(format!("{name}: handing the job to the domU agent")))?;
            Ok(Remote {
                domu: self,
                name,
                n,
            })
        }

        /// What the agent wrote when job `n` ended.
        fn done(&self, n: u32) -> Option<String> {
            let v = self
                .xs
                .read(TxId::NONE, &format!("{}/done/{n}", self.base))
                .ok()?;
            Some(String::from_utf8_lossy(&v).into_owned())
        }

        /// `xl destroy`, bounded.
        fn destroy(&self) {
            if let Err(e) = Proc::start("xl destroy", "xl", &args(&["destroy", &self.name]))
                .and_then(|p| p.ok(Duration::from_secs(30)))
            {
                println!("REALXEN-INFO destroying the domU: {e}");
            }
        }
    }

    /// A job the domU agent runs.
    struct Remote<'a> {
        domu: &'a Domu,
        name: String,
        n: u32,
    }

    impl Remote<'_> {
        /// Waits up to `limit` for the job's end (then has the agent kill it): its stderr,
        /// or why it failed.
        fn ok(self, limit: Duration) -> Result<String, String> {
            let end = Instant::now() + limit;
            let name = &self.name;
            let done = loop {
                if let Some(d) = self.domu.done(self.n) {
                    break d;
                }
                if Instant::now() > end {
                    let kill = format!("{}/kill/{}", self.domu.base, self.n);
                    let _ = self.domu.xs.write(TxId::NONE, &kill, b"1");
                    let stop = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < stop {
                        if let Some(d) = self.domu.done(self.n) {
                            let err = d.split_once('\n').map_or("", |(_, e)| e);
                            return Err(format!("{name} still running after {limit:?}: {err}"));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return Err(format!(
                        "{name} still running after {limit:?}, and the agent did not report \
                         its end 10 s after being told to kill it; domU console: {}",
                        console_tail(&self.domu.name, 5)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let (status, err) = done.split_once('\n').unwrap_or((done.as_str(), ""));
            match status {
                "exit 0" => Ok(err.to_owned()),
                s if s.starts_with("error: ") => {
                    Err(format!("{name}: the domU agent reports an {s}"))
                }
                s => Err(format!("{name} failed ({s}): {err}")),
            }
        }
    }

    /// The domU agent: runs the jobs dom0 writes under its `job/` directory, writes each
    /// one's end under `done/`, kills those named under `kill/`. Never returns but on a
    /// xenstore failure.
    fn agent(dir: &str) -> Result<(), String> {
        let xs = Xenbus::open().map_err(|e| format!("open xenbus: {e}"))?;
        let me = xs.own_domid().map_err(|e| format!("own domid: {e}"))?.0;
        let base = format!("/local/domain/{me}/{AGENT_DIR}");
        for (sub, token) in [("job", "job"), ("kill", "kill")] {
            xs.watch(&format!("{base}/{sub}"), token)
                .map_err(xs_err(format!("watch {base}/{sub}")))?;
        }
        xs.write(TxId::NONE, &format!("{base}/ready"), b"1")
            .map_err(xs_err(format!("write {base}/ready")))?;
        println!("realxen agent: domain {me} ready, jobs under {base}/job");
        let mut jobs: HashMap<u32, Arc<AtomicBool>> = HashMap::new();
        loop {
            // A watch event, or a rescan every second in case one was dropped.
            xs.next_watch_event(Some(Duration::from_secs(1)))
                .map_err(xs_err("watch events".into()))?;
            while let Ok(Some(_)) = xs.next_watch_event(Some(Duration::ZERO)) {}
            let list = |sub: &str| -> Vec<u32> {
                xs.directory(TxId::NONE, &format!("{base}/{sub}"))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            };
            for n in list("job") {
                if jobs.contains_key(&n) {
                    continue;
                }
                let stop = Arc::new(AtomicBool::new(false));
                jobs.insert(n, stop.clone());
                let spec = xs
                    .read(TxId::NONE, &format!("{base}/job/{n}"))
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                let (dir, base) = (dir.to_owned(), base.clone());
                std::thread::spawn(move || {
                    let result = run_job(&dir, &spec, &stop);
                    println!("realxen agent: job {n} ({spec}): {result}");
                    let key = format!("{base}/done/{n}");
                    if let Err(e) =
                        Xenbus::open().and_then(|x| x.write(TxId::NONE, &key, result.as_bytes()))
                    {
                        println!("realxen agent: could not write {key}: {e}");
                    }
                });
            }
            for n in list("kill") {
                if let Some(stop) = jobs.get(&n) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Runs one job, `<limit-secs> <tool> <args...>`: a status line (`exit N`, `signal`,
    /// `killed`, `timeout`, `error ...`), then the stderr tail.
    fn run_job(dir: &str, spec: &str, stop: &AtomicBool) -> String {
        let mut words = spec.split_whitespace();
        let limit = words.next().and_then(|l| l.parse().ok());
        let tool = words.next().filter(|t| !t.contains('/'));
        let (Some(limit), Some(tool)) = (limit, tool) else {
            return format!("error: a malformed job {spec:?}");
        };
        let a: Vec<String> = words.map(str::to_owned).collect();
        let p = match Proc::start(tool, &format!("{dir}/{tool}"), &a) {
            Ok(p) => p,
            Err(e) => return format!("error: {e}"),
        };
        let (status, err) = p.finish_unless(Duration::from_secs(limit), Some(stop));
        let status = match status {
            Some(s) => s
                .code()
                .map_or_else(|| format!("signal ({s})"), |c| format!("exit {c}")),
            None if stop.load(Ordering::Relaxed) => "killed by dom0's request".to_owned(),
            None => format!("timeout: killed by the agent after {limit} s"),
        };
        // xenstored refuses a domU's values over 2 KiB (ENOSPC): keep the end, where the
        // reason is.
        let mut from = err.len().saturating_sub(1536);
        while !err.is_char_boundary(from) {
            from += 1;
        }
        format!("{status}\n{}", &err[from..])
    }

    /// `BIG` bytes each way, the server in `server` and the client in `client`; ours is the
    /// server (and libxenvchan the client) or the reverse.
    fn both_ways(
        env: &Env,
        ours_server: bool,
        server: Dom,
        client: Dom,
        n: u32,
    ) -> Result<String, String> {
        let (sid, cid) = (env.id(server)?, env.id(client)?);
        let p = vchan_path(sid, cid, n);
        let big = BIG.to_string();
        let ours = |mode: &str, peer: u32| {
            let mut a = args(&[mode, "--send-pattern", &big, "--expect-pattern", &big]);
            if mode == "server" {
                a.extend(args(&["--left", "65536", "--right", "65536"]));
            }
            a.extend([peer.to_string(), p.clone()]);
            a
        };
        let theirs = |mode: &str, peer: u32| {
            let mut a = args(&[mode, &peer.to_string(), &p, &big, &big]);
            if mode == "server" {
                a.push("65536".into());
            }
            a
        };
        let (srv, cli) = if ours_server {
            (
                (server, Tool::Ours, ours("server", cid)),
                (client, Tool::Theirs, theirs("client", sid)),
            )
        } else {
            (
                (server, Tool::Theirs, theirs("server", cid)),
                (client, Tool::Ours, ours("client", sid)),
            )
        };
        let (s, c) = env.transfer(&p, srv, cli)?;
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

    /// One-way `BIG` bytes from the server (in `server`) to the client (in `client`), with
    /// `ring`-byte rings; the receiver's rate and both ends' counters.
    fn one_way(
        env: &Env,
        tool: Tool,
        server: Dom,
        client: Dom,
        ring: usize,
        n: u32,
    ) -> Result<(f64, String), String> {
        let (sid, cid) = (env.id(server)?, env.id(client)?);
        let p = vchan_path(sid, cid, n);
        let big = BIG.to_string();
        let ring = ring.to_string();
        let (sa, ca) = match tool {
            Tool::Ours => (
                args(&[
                    "server",
                    "--left",
                    &ring,
                    "--right",
                    &ring,
                    "--send-pattern",
                    &big,
                    &cid.to_string(),
                    &p,
                ]),
                args(&["client", "--expect-pattern", &big, &sid.to_string(), &p]),
            ),
            Tool::Theirs => (
                args(&["server", &cid.to_string(), &p, &big, "0", &ring]),
                args(&["client", &sid.to_string(), &p, "0", &big]),
            ),
        };
        let (s, c) = env.transfer(&p, (server, tool, sa), (client, tool, ca))?;
        let detail = format!("sender: {}; receiver: {}", counters(&s), counters(&c));
        Ok((mbps(&c)?, detail))
    }

    /// Transfers per implementation in a throughput test, alternating ours and libxenvchan.
    const ROUNDS: u32 = 5;

    /// Ours against ours and libxenvchan against libxenvchan, server in `server` sending to
    /// the client in `client`, `ring`-byte rings, same boot: [`ROUNDS`] transfers each,
    /// alternating, and the medians compared (the emulator shares the host with other work,
    /// and a disturbance slows whichever transfer it hits); the best of each is printed too.
    fn throughput(
        env: &Env,
        server: Dom,
        client: Dom,
        ring: usize,
        n: u32,
    ) -> Result<String, String> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut detail, mut their_detail) = (String::new(), String::new());
        for r in 0..ROUNDS {
            // Both run even if one fails, so that a failure says whether libxenvchan fares
            // alike.
            let o = one_way(env, Tool::Ours, server, client, ring, n * 100 + 2 * r);
            let t = one_way(env, Tool::Theirs, server, client, ring, n * 100 + 2 * r + 1);
            let ((rate, d), (their_rate, td)) = match (o, t) {
                (Ok(o), Ok(t)) => (o, t),
                (o, t) => {
                    let show = |r: Result<(f64, String), String>| {
                        r.map_or_else(|e| e, |(mbps, _)| format!("verified, {mbps:.1} MB/s"))
                    };
                    return Err(format!(
                        "round {}: ours: {}; libxenvchan: {}",
                        r + 1,
                        show(o),
                        show(t)
                    ));
                }
            };
            if ours.iter().all(|x| rate > *x) {
                detail = d;
            }
            ours.push(rate);
            if theirs.iter().all(|x| their_rate > *x) {
                their_detail = td;
            }
            theirs.push(their_rate);
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        let (o, t) = (median(&ours), median(&theirs));
        let line = format!(
            "vchan throughput {}->{}, {} KiB rings, 64 MiB verified, median of {ROUNDS}: ours {o:.1} MB/s, libxenvchan {t:.1} MB/s (ratio {:.2}; best {:.1} / {:.1}, ratio {:.2}; rounds ours {}, libxenvchan {}); ours: {detail}; libxenvchan: {their_detail}",
            server.name(),
            client.name(),
            ring / 1024,
            o / t,
            best(&ours),
            best(&theirs),
            best(&ours) / best(&theirs),
            list(&ours),
            list(&theirs)
        );
        println!("REALXEN-INFO {line}");
        Ok(line)
    }

    struct Bins {
        ours: String,
        peer: String,
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

    /// `xen-vchan-realxen --guest [DIR]`: the domU agent.
    fn guest(dir: &str) -> ExitCode {
        match agent(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("realxen agent: {e}");
                ExitCode::FAILURE
            }
        }
    }

    pub fn main() -> ExitCode {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        if argv.first().map(String::as_str) == Some("--guest") {
            return guest(argv.get(1).map_or("/bin", String::as_str));
        }
        let mut dir = "/bin".to_owned();
        let mut domu_cfg = None;
        let mut it = argv.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--domu" => domu_cfg = it.next(),
                _ => dir = a,
            }
        }
        let b = Bins {
            ours: format!("{dir}/xen-vchan"),
            peer: format!("{dir}/vchanpeer"),
        };
        let mut env = Env {
            dir: dir.clone(),
            xs: Xenbus::open().map_err(|e| format!("dom0 xenbus: {e}")),
            domu: Err("not started yet".into()),
        };
        let local: Vec<Test> = vec![
            (
                "vchan_ours_server_libxenvchan_client_64MiB_each_way",
                Box::new(|| both_ways(&env, true, Dom::Zero, Dom::Zero, 1)),
            ),
            (
                "vchan_libxenvchan_server_ours_client_64MiB_each_way",
                Box::new(|| both_ways(&env, false, Dom::Zero, Dom::Zero, 2)),
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
                Box::new(|| throughput(&env, Dom::Zero, Dom::Zero, 64 << 10, 10)),
            ),
            (
                "vchan_throughput_1MiB_rings",
                Box::new(|| throughput(&env, Dom::Zero, Dom::Zero, 1 << 20, 12)),
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
        let mut failed = run_tests(&local);
        drop(local);

        // Across domains. The domU boots only now: with one pCPU for both domains, its boot
        // would take CPU from the tests above (overlapping it with the killed-peer tests
        // saved nothing, both being CPU-bound).
        let booting = match &domu_cfg {
            Some(cfg) => Booting::start(cfg),
            None => Err("no --domu config given".into()),
        };
        let start = booting
            .as_ref()
            .map_or_else(|_| Instant::now(), |b| b.since);
        env.domu = booting.and_then(Booting::ready);
        let boot = match &env.domu {
            Ok(d) => {
                println!(
                    "REALXEN-INFO vchan_domU_agent_ready: domain {} ready {} ms after xl create",
                    d.id,
                    start.elapsed().as_millis()
                );
                println!(
                    "REALXEN-TEST vchan_domU_agent_ready PASS ({} ms)",
                    start.elapsed().as_millis()
                );
                0
            }
            Err(e) => {
                println!("REALXEN-TEST vchan_domU_agent_ready FAIL: {e}");
                1
            }
        };
        let env = &env;
        let (z, u) = (Dom::Zero, Dom::U);
        let across: Vec<Test> = vec![
            (
                "vchan_domU_ours_server_dom0_libxenvchan_client_domU_64MiB_each_way",
                Box::new(move || both_ways(env, true, z, u, 1)),
            ),
            (
                "vchan_domU_libxenvchan_server_domU_ours_client_dom0_64MiB_each_way",
                Box::new(move || both_ways(env, false, u, z, 2)),
            ),
            (
                "vchan_domU_ours_server_domU_libxenvchan_client_dom0_64MiB_each_way",
                Box::new(move || both_ways(env, true, u, z, 3)),
            ),
            (
                "vchan_domU_libxenvchan_server_dom0_ours_client_domU_64MiB_each_way",
                Box::new(move || both_ways(env, false, z, u, 4)),
            ),
            (
                "vchan_domU_throughput_dom0_to_domU_64KiB_rings",
                Box::new(move || throughput(env, z, u, 64 << 10, 10)),
            ),
            (
                "vchan_domU_throughput_dom0_to_domU_1MiB_rings",
                Box::new(move || throughput(env, z, u, 1 << 20, 12)),
            ),
            (
                "vchan_domU_throughput_domU_to_dom0_64KiB_rings",
                Box::new(move || throughput(env, u, z, 64 << 10, 14)),
            ),
            (
                "vchan_domU_throughput_domU_to_dom0_1MiB_rings",
                Box::new(move || throughput(env, u, z, 1 << 20, 16)),
            ),
        ];
        let domu_failed = boot + run_tests(&across);
        if let Ok(d) = &env.domu {
            if domu_failed > 0 {
                println!(
                    "REALXEN-INFO domU console (last lines): {}",
                    console_tail(&d.name, 30)
                );
            }
            d.destroy();
        }
        failed += domu_failed;
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// A named test.
    type Test<'a> = (&'static str, Box<dyn Fn() -> Result<String, String> + 'a>);

    /// Runs `tests` in order, printing a result line for each; how many failed.
    fn run_tests(tests: &[Test<'_>]) -> usize {
        let mut failed = 0;
        for (name, t) in tests {
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
        failed
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
