//! `cargo xtask`: the project's task runner (the alias is in `.cargo/config.toml`).
//!
//! * `cargo xtask ci`: everything CI checks, in order, with a summary.
//! * `cargo xtask abi`: the Rust wire definitions against Xen's C headers.
//! * `cargo xtask loom [-- <test args>]`: the `cfg(loom)` models.
//! * `cargo xtask bench <name> [args...]`: a registered benchmark.
//! * `cargo xtask realxen [--runs N] [--timeout S]`: xen-linux's interop tests on real Xen.
#![deny(unsafe_code)]

mod abi;
mod bench;
mod ci;
mod cmd;
mod loom;
mod realxen;

use cmd::{Result, Workspace};
use std::process::ExitCode;

/// The help text.
const USAGE: &str = "\
usage: cargo xtask <task> [args...]

tasks:
  ci                     fmt, clippy, doc, test, loom and abi, each timed; fails if any fails
  abi                    compare the Rust wire ABI with Xen's C headers (installs libxen-dev
                         with apt-get if the headers are missing)
  loom [-- <test args>]  run tests/loom.rs of every package that has one, with --cfg loom
  bench <name> [args]    run a registered benchmark
  realxen [--runs N] [--timeout S]
                         boot Xen 4.17 + a Linux dom0 under QEMU and run xen-linux's interop
                         tests inside (downloads Debian's packages; installs or unpacks QEMU)
  help                   this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses arguments for tasks that take none.
fn no_args(task: &str, args: &[String]) -> Result {
    match args.first() {
        None => Ok(()),
        Some(arg) => Err(format!(
            "`cargo xtask {task}` takes no arguments (got `{arg}`)"
        )),
    }
}

/// Runs the task `args[0]`.
fn dispatch(args: &[String]) -> Result<ExitCode> {
    let Some((task, rest)) = args.split_first() else {
        return Err(format!("no task given\n\n{USAGE}"));
    };
    match task.as_str() {
        "ci" => {
            no_args(task, rest)?;
            return Ok(ci::run(&Workspace::load()?));
        }
        "abi" => {
            no_args(task, rest)?;
            abi::run(&Workspace::load()?)?;
        }
        "loom" => {
            let test_args = rest.strip_prefix(&["--".to_owned()][..]).unwrap_or(rest);
            loom::run(&Workspace::load()?, test_args)?;
        }
        "bench" => bench::run(&Workspace::load()?, rest)?,
        "realxen" => realxen::run(&Workspace::load()?, rest)?,
        "help" | "-h" | "--help" => println!("{USAGE}"),
        other => return Err(format!("unknown task `{other}`\n\n{USAGE}")),
    }
    Ok(ExitCode::SUCCESS)
}
