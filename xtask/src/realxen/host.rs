//! What the host provides: QEMU, and Debian's Xen, kernel and busybox packages unpacked
//! under `target/realxen/` (never installed, except QEMU when that removes nothing).

use crate::cmd::{self, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Xen version whose packages are used.
pub const XEN_VERSION: &str = "4.17";

/// Debian packages unpacked for dom0 (Xen itself, its tools and their libraries, busybox).
/// The kernel package is added by [`guest_packages`].
const GUEST_PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "libxenmisc4.17",
    // Headers and link names for the libxenvchan peer the harness compiles (host side only).
    "libxen-dev",
    "libxenstore4",
    "libxengnttab1",
    "libxenevtchn1",
    "libxencall1",
    "libxenforeignmemory1",
    "libxendevicemodel1",
    "libxentoolcore1",
    "libxentoollog1",
    "libxenhypfs1",
    "libyajl2",
    "libext2fs2",
    "libncurses6",
    "libtinfo6",
    "libuuid1",
    "liblzma5",
    "libzstd1",
    "zlib1g",
    "busybox-static",
];

/// How QEMU is run.
#[derive(Debug, Clone)]
pub struct Qemu {
    /// The `qemu-system-x86_64` binary.
    pub bin: PathBuf,
    /// Firmware directories for `-L` (an unpacked QEMU's).
    pub data_dirs: Vec<PathBuf>,
    /// `LD_LIBRARY_PATH` for an unpacked QEMU.
    pub lib_path: Option<String>,
    /// Where it came from, for the report.
    pub origin: String,
}

/// A command that failed names itself; add why it matters.
fn need(what: &str) -> impl Fn(String) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The running kernel package name that `linux-image-amd64` depends on.
fn kernel_package() -> Result<String> {
    let out = cmd::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| "apt-cache knows no kernel behind linux-image-amd64".to_owned())
}

/// Every package unpacked for dom0.
pub fn guest_packages() -> Result<Vec<String>> {
    let mut pkgs: Vec<String> = GUEST_PACKAGES.iter().map(|s| (*s).to_owned()).collect();
    pkgs.push(kernel_package()?);
    Ok(pkgs)
}

/// `apt-get download` of `pkgs` into `debs`, running `apt-get update` once if the first
/// attempt fails (missing package lists).
fn download(debs: &Path, pkgs: &[String]) -> Result {
    std::fs::create_dir_all(debs).map_err(|e| format!("mkdir {}: {e}", debs.display()))?;
    let attempt = || {
        cmd::run(
            Command::new("apt-get")
                .current_dir(debs)
                .arg("download")
                .args(pkgs),
        )
    };
    if attempt().is_ok() {
        return Ok(());
    }
    println!("realxen: apt-get download failed; refreshing the package lists");
    cmd::run(Command::new("apt-get").arg("update"))?;
    attempt()
}

/// Downloads and unpacks `pkgs` into `root` unless `root` already holds exactly them.
pub fn unpack(dir: &Path, root: &Path, pkgs: &[String]) -> Result {
    let stamp = root.join(".realxen-packages");
    let want = pkgs.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let debs = dir.join("debs");
    let _ = std::fs::remove_dir_all(&debs);
    let _ = std::fs::remove_dir_all(root);
    download(&debs, pkgs).map_err(need(
        "cannot download Debian's packages (this needs a Debian bookworm host with apt and network access)",
    ))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)
        .map_err(|e| format!("read {}: {e}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    std::fs::create_dir_all(root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    for f in &files {
        cmd::output(Command::new("dpkg").arg("-x").arg(f).arg(root))?;
    }
    std::fs::write(&stamp, want).map_err(|e| format!("write {}: {e}", stamp.display()))?;
    let _ = std::fs::remove_dir_all(&debs);
    Ok(())
}

/// What `apt-get install --simulate` says an install would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Simulation {
    /// Packages it would install.
    pub install: Vec<String>,
    /// Packages it would remove.
    pub remove: Vec<String>,
}

/// Parses `Inst pkg (...)` and `Remv pkg [...]` lines.
pub fn parse_simulation(out: &str) -> Simulation {
    let mut s = Simulation::default();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Inst"), Some(p)) => s.install.push(p.to_owned()),
            (Some("Remv"), Some(p)) => s.remove.push(p.to_owned()),
            _ => {}
        }
    }
    s
}

/// Finds or provides `qemu-system-x86_64`.
///
/// An installed one is used as is. Otherwise Debian's `qemu-system-x86` is installed with
/// apt-get if that removes nothing; if it would remove packages (bookworm's QEMU 7.2 conflicts
/// with a newer `qemu-utils` from backports, for instance), the packages it would install are
/// downloaded and unpacked under `dir` instead, and run from there, leaving the host alone.
pub fn qemu(dir: &Path) -> Result<Qemu> {
    if let Some(bin) = which("qemu-system-x86_64") {
        return Ok(Qemu {
            bin,
            data_dirs: Vec::new(),
            lib_path: None,
            origin: "installed".into(),
        });
    }
    let local = dir.join("qemu");
    let local_bin = local.join("usr/bin/qemu-system-x86_64");
    let simulate = |refresh: bool| -> Result<Simulation> {
        if refresh {
            cmd::run(Command::new("apt-get").arg("update"))?;
        }
        let out = cmd::output(Command::new("apt-get").args([
            "install",
            "--simulate",
            "--no-install-recommends",
            "qemu-system-x86",
        ]))?;
        Ok(parse_simulation(&out))
    };
    let sim = if local_bin.exists() {
        None
    } else {
        Some(simulate(false).or_else(|_| simulate(true)).map_err(need(
            "QEMU is not installed and apt-get cannot provide qemu-system-x86",
        ))?)
    };
    if let Some(sim) = &sim {
        if sim.remove.is_empty() {
            println!("realxen: installing qemu-system-x86 with apt-get");
            cmd::run(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args([
                        "install",
                        "-y",
                        "--no-install-recommends",
                        "qemu-system-x86",
                    ]),
            )
            .map_err(need("installing qemu-system-x86 failed"))?;
            let bin = which("qemu-system-x86_64")
                .ok_or("qemu-system-x86 is installed but qemu-system-x86_64 is not on PATH")?;
            return Ok(Qemu {
                bin,
                data_dirs: Vec::new(),
                lib_path: None,
                origin: "installed now".into(),
            });
        }
        println!(
            "realxen: installing qemu-system-x86 would remove {} from this host; \
             unpacking it under {} instead",
            sim.remove.join(", "),
            local.display()
        );
        unpack(dir.join("qemu-pkgs").as_path(), &local, &sim.install)?;
    }
    if !local_bin.exists() {
        return Err(format!(
            "unpacked QEMU has no {} (the packages changed?)",
            local_bin.display()
        ));
    }
    let lib_dirs = [
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/pulseaudio",
    ];
    let lib_path = lib_dirs
        .iter()
        .map(|d| local.join(d).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Ok(Qemu {
        bin: local_bin,
        data_dirs: ["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"]
            .iter()
            .map(|d| local.join(d))
            .collect(),
        lib_path: Some(lib_path),
        origin: format!("unpacked under {}", local.display()),
    })
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulation_lines() {
        let out = "NOTE: This is only a simulation!\n\
                   Remv qemu-utils [1:10.0.2+ds-2]\n\
                   Inst seabios (1.16.2-1 Debian:12.15/oldstable [all])\n\
                   Inst qemu-system-x86 (1:7.2+dfsg-7 Debian [amd64])\n\
                   Conf seabios (1.16.2-1 Debian:12.15/oldstable [all])\n";
        assert_eq!(
            parse_simulation(out),
            Simulation {
                install: vec!["seabios".into(), "qemu-system-x86".into()],
                remove: vec!["qemu-utils".into()],
            }
        );
        assert_eq!(parse_simulation(""), Simulation::default());
    }
}
