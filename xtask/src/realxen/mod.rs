//! `cargo xtask realxen`: the interop tests on real Xen 4.17, under QEMU.
//!
//! 1. QEMU, and Debian's Xen hypervisor, tools, libraries, kernel and busybox packages,
//!    unpacked under `target/realxen/` (cached; see [`host`]).
//! 2. The interop binary, `cargo build --release -p xen-linux --example xen-linux-interop`.
//! 3. A dom0 initramfs (uncompressed `newc`, [`cpio`]): busybox, xenstored, xen-init-dom0,
//!    xenconsoled and `xl` with their libraries, the Xen device modules, our init, the interop
//!    binary and the vchan suite; and, as files in it, a PV domU's kernel (the same Debian
//!    kernel), its `xl` config and its own small initramfs (busybox, the vchan tools, the Xen
//!    device modules, an init that runs the vchan suite's agent).
//! 4. Xen boots under QEMU TCG (`smap=0`, one vCPU, bounded by a timeout); dom0's init starts
//!    xenstored and xenconsoled, runs the interop binary, then the vchan suite (which starts
//!    the domU with `xl create` for its cross-domain tests), and powers off. The console is
//!    parsed for `REALXEN-TEST` lines ([`console`]); each test's result is reported here.
//!
//! A boot that prints no result line is retried once (and reported). The console log of a
//! failed boot is kept and its path printed. Without QEMU or the packages the task fails and
//! says why: it never skips.

mod console;
mod cpio;
mod host;

use crate::cmd::{self, Result, Workspace};
use console::Outcome;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The interop binary, an example of `xen-linux`.
const INTEROP: &str = "xen-linux-interop";

/// Seconds the interop binary may run inside dom0 before init gives up on it.
const INTEROP_LIMIT: u32 = 300;

/// The vchan interop tests, an example of `xen-vchan` (feature `linux`), and the tool they
/// drive.
const VCHAN_SUITE: &str = "xen-vchan-realxen";
/// The `xen-vchan` tool.
const VCHAN_TOOL: &str = "xen-vchan";
/// The libxenvchan peer, compiled here from `vchanpeer.c` against Debian's libxenvchan.
const VCHAN_PEER: &str = "vchanpeer";
/// Its source.
const VCHAN_PEER_SRC: &str = include_str!("vchanpeer.c");
/// How many dom0-to-dom0 tests the vchan suite reports: a boot with fewer (it crashed or hung)
/// fails.
const VCHAN_TESTS: usize = 10;
/// How many cross-domain (`vchan_domU_*`) tests it reports: the domU's boot and 8 transfers.
const DOMU_TESTS: usize = 9;
/// The prefix of the cross-domain tests.
const DOMU_PREFIX: &str = "vchan_domU_";
/// Seconds the vchan suite may run inside dom0.
const VCHAN_LIMIT: u32 = 400;

/// Xen tools dom0 needs, relative to the unpacked packages.
const XEN_TOOLS: &[&str] = &[
    "usr/lib/xen-4.17/bin/xenstored",
    "usr/lib/xen-4.17/bin/xen-init-dom0",
    "usr/lib/xen-4.17/bin/xenconsoled",
    "usr/lib/xen-4.17/bin/xl",
    "usr/bin/xenstore",
];

/// Kernel modules for the Xen devices, in load order.
const MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-privcmd",
    "xenfs",
];

/// Kernel modules the domU loads: the devices the vchan tools use.
const DOMU_MODULES: &[&str] = &["xen-evtchn", "xen-gntdev", "xen-gntalloc"];

/// The domU's name (`xl`), memory and files inside dom0.
const DOMU_NAME: &str = "realxen-domu";
const DOMU_MEMORY_MIB: u32 = 160;
const DOMU_KERNEL: &str = "boot/domu-vmlinuz";
const DOMU_INITRD: &str = "boot/domu-initrd.cpio";
const DOMU_CFG: &str = "etc/realxen/domu.cfg";

/// Xen's command line.
///
/// `spec-ctrl=eager-fpu`: QEMU's TCG CPU says AuthenticAMD, so Xen switches PV vCPUs' FPU
/// state lazily (CR0.TS, restored on #NM). Under QEMU 7.2's TCG that loses register state
/// when two domains share the one pCPU: every dom0<->domU vchan transfer, libxenvchan's
/// alone too, then fails its checksum at a random offset, and processes crash on garbage
/// values. The same boot with two pCPUs, or with eager switching, passes. Dom0 alone never
/// showed it (its own kernel switches FPU state eagerly).
const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 smap=0 spec-ctrl=eager-fpu \
                           dom0_mem=512M,max:512M dom0_max_vcpus=1 loglvl=all guest_loglvl=all";

/// Options of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    /// Boots in a row (each must pass).
    runs: u32,
    /// Limit for one boot.
    timeout: Duration,
}

const USAGE: &str = "usage: cargo xtask realxen [--runs N] [--timeout SECONDS]";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        runs: 1,
        timeout: Duration::from_secs(600),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number\n{USAGE}"))
        };
        match a.as_str() {
            "--runs" => o.runs = u32::try_from(value("--runs")?).map_err(|e| e.to_string())?,
            "--timeout" => o.timeout = Duration::from_secs(value("--timeout")?),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Runs the task.
pub fn run(ws: &Workspace, args: &[String]) -> Result {
    let opts = parse_args(args)?;
    let dir = ws.target_dir.join("realxen");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let prep = Instant::now();

    let qemu = host::qemu(&dir)?;
    println!("realxen: QEMU {} ({})", qemu.bin.display(), qemu.origin);
    let pkgs = host::guest_packages()?;
    let root = dir.join("packages");
    host::unpack(&dir, &root, &pkgs)?;
    println!("realxen: Debian packages unpacked under {}", root.display());

    cmd::run(cmd::cargo().current_dir(&ws.root).args([
        "build",
        "--release",
        "-p",
        "xen-linux",
        "--example",
        INTEROP,
    ]))?;
    let interop = ws.target_dir.join("release/examples").join(INTEROP);
    cmd::run(cmd::cargo().current_dir(&ws.root).args([
        "build",
        "--release",
        "-p",
        "xen-vchan",
        "--features",
        "linux",
        "--bin",
        VCHAN_TOOL,
        "--example",
        VCHAN_SUITE,
    ]))?;
    let peer = build_peer(&dir, &root)?;
    let ours = [
        (INTEROP, interop),
        (
            VCHAN_SUITE,
            ws.target_dir.join("release/examples").join(VCHAN_SUITE),
        ),
        (VCHAN_TOOL, ws.target_dir.join("release").join(VCHAN_TOOL)),
        (VCHAN_PEER, peer),
    ];

    let images = build_images(&dir, &root, &ours)?;
    println!(
        "realxen: images ready in {:.1} s",
        prep.elapsed().as_secs_f64()
    );

    let mut failures = 0;
    let mut times = Vec::new();
    for run in 1..=opts.runs {
        let (outcome, wall, log) = boot_with_retry(&dir, &qemu, &images, opts.timeout, run)?;
        report(run, opts.runs, &outcome, wall);
        let passed = outcome.tests.iter().filter(|t| t.pass).count() as u64;
        crate::cmd::add_tests(passed, outcome.tests.len() as u64 - passed);
        times.push(wall.as_secs_f64());
        let (vchan, domu) = vchan_results(&outcome);
        if vchan < VCHAN_TESTS {
            println!("realxen: the vchan suite reported {vchan} of {VCHAN_TESTS} dom0 tests");
        }
        if domu < DOMU_TESTS {
            println!("realxen: the vchan suite reported {domu} of {DOMU_TESTS} domU tests");
        }
        if outcome.passed() && vchan >= VCHAN_TESTS && domu >= DOMU_TESTS {
            let _ = std::fs::remove_file(&log);
        } else {
            failures += 1;
            println!("realxen: console log kept: {}", log.display());
        }
    }
    let list: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!(
        "realxen: {} of {} boots passed; wall times (s): {}",
        opts.runs - failures,
        opts.runs,
        list.join(", ")
    );
    if failures == 0 {
        Ok(())
    } else {
        Err(format!("{failures} of {} real-Xen boots failed", opts.runs))
    }
}

/// How many results the vchan suite printed (it runs after the interop binary's DONE line):
/// dom0-to-dom0 tests and cross-domain ones.
fn vchan_results(o: &Outcome) -> (usize, usize) {
    let count = |f: &dyn Fn(&str) -> bool| o.tests.iter().filter(|t| f(&t.name)).count();
    (
        count(&|n| n.starts_with("vchan_") && !n.starts_with(DOMU_PREFIX)),
        count(&|n| n.starts_with(DOMU_PREFIX)),
    )
}

fn report(run: u32, runs: u32, o: &Outcome, wall: Duration) {
    let passed = o.tests.iter().filter(|t| t.pass).count();
    let ready = o
        .ready_at
        .map_or("never".to_owned(), |t| format!("{:.1} s", t.as_secs_f64()));
    println!(
        "realxen: boot {run}/{runs}: {passed}/{} tests passed{}; dom0 ready at {ready}, whole boot {:.1} s",
        o.tests.len(),
        if o.done {
            ""
        } else {
            " (the test binary did not finish)"
        },
        wall.as_secs_f64()
    );
    for t in &o.tests {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        println!("  {verdict} {} {}", t.name, t.detail);
    }
}

/// What QEMU boots.
struct Images {
    xen: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

fn io_err(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

/// Compiles the libxenvchan peer against the unpacked headers and library (`libxen-dev`,
/// `libxenmisc4.17`); a missing C compiler is an error that says so.
fn build_peer(dir: &Path, root: &Path) -> Result<PathBuf> {
    let src = dir.join("vchanpeer.c");
    std::fs::write(&src, VCHAN_PEER_SRC).map_err(io_err(&src))?;
    let out = dir.join(VCHAN_PEER);
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    let cc = host::which("cc").ok_or(
        "realxen needs a C compiler (`cc`, e.g. apt-get install gcc) to build the libxenvchan peer",
    )?;
    cmd::run(
        Command::new(cc)
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg(format!("-I{}", root.join("usr/include").display()))
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,-rpath-link,{}", lib.display()))
            .arg("-lxenvchan"),
    )?;
    Ok(out)
}

/// The members of one initramfs, written by [`Tree::write`].
#[derive(Default)]
struct Tree {
    files: Vec<(String, cpio::Entry)>,
    dirs: BTreeSet<String>,
}

impl Tree {
    /// `src` as `dest`, executable.
    fn file(&mut self, dest: &str, src: &Path) -> Result {
        let data = std::fs::read(src).map_err(io_err(src))?;
        self.data(dest, data, 0o755);
        Ok(())
    }

    fn data(&mut self, dest: &str, data: Vec<u8>, perm: u32) {
        self.files
            .push((dest.to_owned(), cpio::Entry::File { data, perm }));
    }

    fn link(&mut self, dest: &str, target: &str) {
        self.files
            .push((dest.to_owned(), cpio::Entry::Symlink(target.to_owned())));
    }

    /// busybox as `bin/busybox`, with these applets linked to it.
    fn busybox(&mut self, root: &Path, applets: &[&str]) -> Result {
        self.file("bin/busybox", &root.join("bin/busybox"))?;
        for applet in applets {
            self.link(&format!("bin/{applet}"), "busybox");
        }
        Ok(())
    }

    /// The kernel modules `names`, as `lib/modules/<name>.ko`.
    fn modules(&mut self, kdir: &Path, names: &[&str]) -> Result {
        for m in names {
            self.file(&format!("lib/modules/{m}.ko"), &find_module(kdir, m)?)?;
        }
        Ok(())
    }

    /// The shared libraries of `elves` (see [`shared_libraries`]).
    fn libraries(&mut self, root: &Path, elves: &[PathBuf]) -> Result {
        for (dest, src) in shared_libraries(root, elves)? {
            self.file(&dest, &src)?;
        }
        Ok(())
    }

    /// Writes the archive: every directory before its members (the kernel does not create
    /// parents), then the members.
    fn write(self, out: &Path) -> Result {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|(n, _)| n.clone())
            .chain(self.dirs.iter().cloned())
            .collect();
        let mut all_dirs = parent_dirs(&names);
        all_dirs.extend(self.dirs);
        let f = std::fs::File::create(out).map_err(io_err(out))?;
        let mut w = cpio::Writer::new(std::io::BufWriter::new(f));
        for d in &all_dirs {
            w.add(d, &cpio::Entry::Dir).map_err(io_err(out))?;
        }
        for (name, entry) in &self.files {
            w.add(name, entry).map_err(io_err(out))?;
        }
        w.finish().and_then(|mut b| b.flush()).map_err(io_err(out))
    }
}

/// glibc's unwinder, which `pthread_cancel` (used by libxl) loads with `dlopen`, so `ldd`
/// does not list it: the host's, as `(path in dom0, file on the host)`.
fn libgcc_s() -> Result<(String, PathBuf)> {
    ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| Path::new(d).join("libgcc_s.so.1"))
        .find(|p| p.exists())
        .map(|p| {
            let real = std::fs::canonicalize(&p).unwrap_or(p);
            ("lib/x86_64-linux-gnu/libgcc_s.so.1".to_owned(), real)
        })
        .ok_or_else(|| "the host has no libgcc_s.so.1 (xl needs it in dom0)".to_owned())
}

/// Builds `xen.bin`, copies the kernel, and writes the dom0 initramfs holding `ours`
/// (`(name in /bin, file)`) and the domU's kernel, config and initramfs.
fn build_images(dir: &Path, root: &Path, ours: &[(&str, PathBuf)]) -> Result<Images> {
    let xen_gz = root.join(format!("boot/xen-{}-amd64.gz", host::XEN_VERSION));
    let xen = dir.join("xen.bin");
    // QEMU's -kernel loads the gunzipped image: a 32-bit ELF with a multiboot header.
    let raw = cmd::output_bytes(Command::new("gzip").arg("-dc").arg(&xen_gz))?;
    std::fs::write(&xen, raw).map_err(io_err(&xen))?;

    let modules_dir = root.join("lib/modules");
    let kver = std::fs::read_dir(&modules_dir)
        .map_err(io_err(&modules_dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .ok_or("the kernel package has no lib/modules")?;
    let kernel = root.join(format!("boot/vmlinuz-{kver}"));
    let kdir = modules_dir.join(&kver);

    // The domU's initramfs, first: it goes into dom0's as a file.
    let domu_initrd = dir.join("domu-initrd.cpio");
    build_domu_initrd(root, &kdir, ours, &domu_initrd)?;

    let mut t = Tree::default();
    t.busybox(
        root,
        &[
            "sh", "mount", "mkdir", "insmod", "poweroff", "sleep", "cat", "echo", "sync", "uname",
            "ls", "dmesg", "free", "cut", "timeout",
        ],
    )?;
    // Xen tools, our binaries, and the shared libraries they load.
    let mut elves = Vec::new();
    for tool in XEN_TOOLS {
        t.file(tool, &root.join(tool))?;
        elves.push(root.join(tool));
    }
    for link in [
        "xenstore-read",
        "xenstore-write",
        "xenstore-ls",
        "xenstore-rm",
    ] {
        t.link(&format!("usr/bin/{link}"), "xenstore");
    }
    for (name, file) in ours {
        t.file(&format!("bin/{name}"), file)?;
        elves.push(file.clone());
    }
    t.libraries(root, &elves)?;
    let (dest, src) = libgcc_s()?;
    t.file(&dest, &src)?;
    let xl_conf = root.join("etc/xen/xl.conf");
    if xl_conf.exists() {
        t.file("etc/xen/xl.conf", &xl_conf)?;
    }
    t.modules(&kdir, MODULES)?;
    // The domU: kernel, initramfs, config.
    t.file(DOMU_KERNEL, &kernel)?;
    t.file(DOMU_INITRD, &domu_initrd)?;
    t.data(DOMU_CFG, domu_config().into_bytes(), 0o644);
    // xenstored puts its socket under /var/run.
    t.link("var/run", "../run");
    t.data("init", init_script().into_bytes(), 0o755);
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/lib/xenstored",
        "var/lib/xen",
        "var/log/xen/console",
        "etc",
    ] {
        t.dirs.insert(d.to_owned());
    }
    let initrd = dir.join("dom0-initrd.cpio");
    t.write(&initrd)?;
    Ok(Images {
        xen,
        kernel,
        initrd,
    })
}

/// The domU's initramfs: busybox, the vchan suite (its agent), the tools it runs and their
/// libraries, the Xen device modules and [`domu_init_script`].
fn build_domu_initrd(root: &Path, kdir: &Path, ours: &[(&str, PathBuf)], out: &Path) -> Result {
    let mut t = Tree::default();
    t.busybox(
        root,
        &["sh", "mount", "insmod", "poweroff", "echo", "uname", "cat"],
    )?;
    let mut elves = Vec::new();
    for (name, file) in ours
        .iter()
        .filter(|(n, _)| [VCHAN_SUITE, VCHAN_TOOL, VCHAN_PEER].contains(n))
    {
        t.file(&format!("bin/{name}"), file)?;
        elves.push(file.clone());
    }
    t.libraries(root, &elves)?;
    t.modules(kdir, DOMU_MODULES)?;
    t.data("init", domu_init_script().into_bytes(), 0o755);
    for d in ["proc", "sys", "dev", "tmp"] {
        t.dirs.insert(d.to_owned());
    }
    t.write(out)
}

/// Every ancestor directory of `names`, sorted, so that each comes after its parent.
fn parent_dirs(names: &[String]) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for name in names {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.display().to_string());
            p = d.parent();
        }
    }
    dirs
}

/// The `.ko` of module `name` (Debian names files with `-` or `_`).
fn find_module(kdir: &Path, name: &str) -> Result<PathBuf> {
    let want = [
        format!("{name}.ko"),
        format!("{}.ko", name.replace('-', "_")),
    ];
    let mut stack = vec![kdir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(&d))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if want
                .iter()
                .any(|w| p.file_name().is_some_and(|f| f == w.as_str()))
            {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "kernel module {name} not found under {}",
        kdir.display()
    ))
}

/// The shared libraries of `elves` (and the dynamic loader), resolved with `ldd` against the
/// unpacked packages first, then the host: `(path in dom0, file on the host)`.
fn shared_libraries(root: &Path, elves: &[PathBuf]) -> Result<Vec<(String, PathBuf)>> {
    let lib_path = dom0_lib_dirs()
        .iter()
        .map(|d| root.join(d.trim_start_matches('/')).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut libs = BTreeSet::new();
    for elf in elves {
        let out = cmd::output(
            Command::new("ldd")
                .arg(elf)
                .env("LD_LIBRARY_PATH", &lib_path),
        )?;
        for line in out.lines() {
            if line.contains("not found") {
                return Err(format!(
                    "{} needs a library that neither the unpacked packages nor the host has: {}",
                    elf.display(),
                    line.trim()
                ));
            }
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    let mut out = Vec::new();
    for lib in libs {
        let dest = match lib.strip_prefix(root) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => lib.display().to_string().trim_start_matches('/').to_owned(),
        };
        // `cp -L`: the file the link points to, under the name the binaries ask for.
        let real = std::fs::canonicalize(&lib).map_err(io_err(&lib))?;
        out.push((dest, real));
    }
    Ok(out)
}

/// Library directories inside dom0 (the init exports them as `LD_LIBRARY_PATH`).
fn dom0_lib_dirs() -> [&'static str; 4] {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/xen-4.17/lib/x86_64-linux-gnu",
        "/usr/lib/xen-4.17/lib",
    ]
}

/// Dom0's `/init`: devices, xenstored, xenconsoled, the interop tests, the vchan suite (which
/// starts the domU), power off.
fn init_script() -> String {
    let modules = MODULES.join(" ");
    let libs = dom0_lib_dirs().join(":");
    format!(
        r#"#!/bin/sh
# dom0 init of `cargo xtask realxen` (generated by xtask/src/realxen/mod.rs)
export PATH=/bin:/usr/bin:/usr/lib/xen-4.17/bin
export LD_LIBRARY_PATH={libs}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# xenconsoled gives each guest console a pty.
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "REALXEN-INIT kernel $(uname -r)"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "REALXEN-INIT insmod $m failed"
done
mount -t xenfs xenfs /proc/xen || echo "REALXEN-INIT mounting xenfs failed"
mkdir -p /run/xenstored /run/xen /var/lib/xenstored /var/log/xen
XENSTORED_ROOTDIR=/run/xenstored xenstored --pid-file /run/xenstored.pid
i=0
until timeout 5 xenstore-read / >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 100 ] && {{ echo "REALXEN-INIT xenstored did not start"; break; }}
  sleep 0.1
done
timeout 60 xen-init-dom0 >/dev/null || echo "REALXEN-INIT xen-init-dom0 failed"
# Drains guest consoles into /var/log/xen/console/guest-<name>.log.
xenconsoled --pid-file /run/xenconsoled.pid --log=guest || echo "REALXEN-INIT xenconsoled failed"
echo "REALXEN-READY"
timeout {INTEROP_LIMIT} /bin/{INTEROP}
echo "REALXEN-EXIT rc=$?"
timeout {VCHAN_LIMIT} /bin/{VCHAN_SUITE} /bin --domu /{DOMU_CFG}
echo "REALXEN-EXIT {VCHAN_SUITE} rc=$?"
sync
poweroff -f
"#
    )
}

/// The domU's `xl` config: PV, no disk, no network, the same kernel as dom0.
fn domu_config() -> String {
    format!(
        r#"# PV domU of `cargo xtask realxen` (generated by xtask/src/realxen/mod.rs)
name = "{DOMU_NAME}"
type = "pv"
kernel = "/{DOMU_KERNEL}"
ramdisk = "/{DOMU_INITRD}"
extra = "console=hvc0 rdinit=/init loglevel=4"
memory = {DOMU_MEMORY_MIB}
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#
    )
}

/// The domU's `/init`: devices, then the vchan suite's agent, which runs the domU side of the
/// cross-domain tests; power off if it ends. Its console goes to xenconsoled's log in dom0.
fn domu_init_script() -> String {
    let modules = DOMU_MODULES.join(" ");
    let libs = dom0_lib_dirs().join(":");
    format!(
        r#"#!/bin/sh
# domU init of `cargo xtask realxen` (generated by xtask/src/realxen/mod.rs)
export PATH=/bin
export LD_LIBRARY_PATH={libs}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "realxen domU: kernel $(uname -r)"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "realxen domU: insmod $m failed"
done
/bin/{VCHAN_SUITE} --guest /bin
echo "realxen domU: the agent exited, rc=$?"
poweroff -f
"#
    )
}

/// Boots once; if no result line appeared, boots once more. Returns the last outcome, its
/// wall time and its console log.
fn boot_with_retry(
    dir: &Path,
    qemu: &host::Qemu,
    images: &Images,
    timeout: Duration,
    run: u32,
) -> Result<(Outcome, Duration, PathBuf)> {
    let log = dir.join(format!("console-run{run}.log"));
    let (outcome, wall) = boot(qemu, images, timeout, &log)?;
    if !outcome.boot_failed() {
        return Ok((outcome, wall, log));
    }
    let failed_log = dir.join(format!("console-run{run}-attempt1.log"));
    let _ = std::fs::rename(&log, &failed_log);
    println!(
        "realxen: boot {run} printed no test result after {:.1} s (console log {}); retrying once",
        wall.as_secs_f64(),
        failed_log.display()
    );
    let (outcome, wall) = boot(qemu, images, timeout, &log)?;
    Ok((outcome, wall, log))
}

/// One QEMU run, bounded by `timeout`; the console goes to `log` with timestamps.
fn boot(
    qemu: &host::Qemu,
    images: &Images,
    timeout: Duration,
    log: &Path,
) -> Result<(Outcome, Duration)> {
    let dom0_cmdline = "console=hvc0 earlyprintk=xen rdinit=/init loglevel=4";
    // timeout(1) bounds QEMU even if this process dies; our own deadline is a little later.
    let mut c = Command::new("timeout");
    c.args(["-k", "5"])
        .arg(timeout.as_secs().to_string())
        .arg(&qemu.bin);
    for d in &qemu.data_dirs {
        c.arg("-L").arg(d);
    }
    if let Some(p) = &qemu.lib_path {
        c.env("LD_LIBRARY_PATH", p);
    }
    // In -initrd a comma separates multiboot modules; each module's command line follows its
    // path after a space.
    c.args([
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "1024",
        "-nographic",
        "-vga",
        "none",
        "-no-reboot",
        "-net",
        "none",
        "-kernel",
    ])
    .arg(&images.xen)
    .arg("-append")
    .arg(XEN_CMDLINE)
    .arg("-initrd")
    .arg(format!(
        "{} {dom0_cmdline},{}",
        images.kernel.display(),
        images.initrd.display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    println!("realxen: $ {}", cmd::show(&c));
    let mut logf = std::fs::File::create(log).map_err(io_err(log))?;
    let _ = writeln!(logf, "$ {}", cmd::show(&c));
    let start = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", qemu.bin.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                buf.clear();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = start + timeout + Duration::from_secs(15);
    let mut outcome = Outcome::default();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let at = start.elapsed();
                let _ = writeln!(logf, "[{:8.2}] {line}", at.as_secs_f64());
                outcome.feed(&line, at);
                if line.contains(console::TEST)
                    || line.contains(console::DONE)
                    || line.contains(console::INFO)
                {
                    println!("realxen: [{:6.1}s] {line}", at.as_secs_f64());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= deadline {
                    timed_out = true;
                    break;
                }
            }
        }
    }
    if timed_out {
        let _ = child.kill();
        let _ = writeln!(
            logf,
            "realxen: killed QEMU after the {} s timeout",
            timeout.as_secs()
        );
        println!(
            "realxen: QEMU killed after the {} s timeout",
            timeout.as_secs()
        );
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    let wall = start.elapsed();
    let _ = writeln!(
        logf,
        "realxen: QEMU exited: {status}, {:.1} s",
        wall.as_secs_f64()
    );
    Ok((outcome, wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ancestor_directory_is_listed_before_its_children() {
        let names = ["var/lib/xen".to_owned(), "usr/lib/a/b.so".to_owned()];
        let d: Vec<String> = parent_dirs(&names).into_iter().collect();
        assert_eq!(d, ["usr", "usr/lib", "usr/lib/a", "var", "var/lib"]);
    }

    #[test]
    fn a_boot_counts_the_vchan_results() {
        let mut o = Outcome::default();
        o.feed("REALXEN-TEST grant_copy PASS (1 ms)", Duration::ZERO);
        o.feed("REALXEN-TEST vchan_x PASS (1 ms)", Duration::ZERO);
        o.feed("REALXEN-TEST vchan_y FAIL: no", Duration::ZERO);
        o.feed("REALXEN-TEST vchan_domU_z PASS (1 ms)", Duration::ZERO);
        assert_eq!(vchan_results(&o), (2, 1));
    }

    #[test]
    fn arguments() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_args(&[]).unwrap(),
            Options {
                runs: 1,
                timeout: Duration::from_secs(600)
            }
        );
        assert_eq!(
            parse_args(&s(&["--runs", "5", "--timeout", "300"])).unwrap(),
            Options {
                runs: 5,
                timeout: Duration::from_secs(300)
            }
        );
        assert!(parse_args(&s(&["--runs", "0"])).is_err());
        assert!(parse_args(&s(&["--runs"])).is_err());
        assert!(
            parse_args(&s(&["--fast"]))
                .unwrap_err()
                .contains("unknown argument")
        );
    }

    #[test]
    fn init_runs_the_interop_binary_and_powers_off() {
        let init = init_script();
        assert!(init.starts_with("#!/bin/sh\n"));
        for m in MODULES {
            assert!(init.contains(m));
        }
        assert!(init.contains("xenstored --pid-file"));
        let devpts = init.find("mount -t devpts").unwrap();
        let consoled = init.find("xenconsoled --pid-file").unwrap();
        let ready = init.find(console::READY).unwrap();
        let vchan = init
            .find(&format!("/bin/{VCHAN_SUITE} /bin --domu /{DOMU_CFG}"))
            .unwrap();
        let tests = init.find(&format!("/bin/{INTEROP}")).unwrap();
        let off = init.find("poweroff -f").unwrap();
        // The vchan suite runs last: its killed peers and its domU must not disturb the grant
        // tests. xenconsoled drains the domU's console, so it runs before.
        assert!(
            devpts < consoled && consoled < ready && ready < tests && tests < vchan && vchan < off
        );
    }

    #[test]
    fn xen_switches_fpu_state_eagerly() {
        // Without it, dom0<->domU transfers on one pCPU fail their checksums (see XEN_CMDLINE).
        assert!(
            XEN_CMDLINE
                .split_whitespace()
                .any(|w| w == "spec-ctrl=eager-fpu")
        );
        assert!(XEN_CMDLINE.split_whitespace().any(|w| w == "smap=0"));
    }

    #[test]
    fn the_domu_boots_our_files_and_runs_the_agent() {
        let cfg = domu_config();
        for want in [
            format!("name = \"{DOMU_NAME}\""),
            "type = \"pv\"".to_owned(),
            format!("kernel = \"/{DOMU_KERNEL}\""),
            format!("ramdisk = \"/{DOMU_INITRD}\""),
            format!("memory = {DOMU_MEMORY_MIB}"),
        ] {
            assert!(cfg.contains(&want), "{want} missing from\n{cfg}");
        }
        // No disk, no network: nothing a hotplug script or a backend would have to serve.
        assert!(
            !cfg.lines()
                .any(|l| l.starts_with("disk") || l.starts_with("vif"))
        );
        // Dom0 has 512 MiB of the machine's 1024; the domU fits in what is left.
        assert!((128..=192).contains(&DOMU_MEMORY_MIB));

        let init = domu_init_script();
        assert!(init.starts_with("#!/bin/sh\n"));
        for m in DOMU_MODULES {
            assert!(init.contains(m));
        }
        let agent = init
            .find(&format!("/bin/{VCHAN_SUITE} --guest /bin"))
            .unwrap();
        let off = init.find("poweroff -f").unwrap();
        assert!(agent < off);
    }
}
