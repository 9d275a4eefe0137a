//! `cargo xtask ci`: every check, in order, each timed; all run even when one fails.
//!
//! Steps: rustfmt, clippy (all targets, warnings denied), rustdoc (warnings denied), the
//! workspace tests (unit, integration, doc tests and the trybuild compile-fail suite), the
//! vchan soak (xen-vchan's `tests/soak.rs` again, in release mode at full size: 1 GiB each
//! way on representative ring orders, 16 MiB on every order pair), the loom models, the ABI
//! check, and the real-Xen suite (`cargo xtask realxen`, one boot under QEMU). Clippy,
//! rustdoc and the tests run with all features, so the Linux-only `xen-vchan` tool is checked. Child output passes through live. The summary ends with
//! `ci: N passed, M failed` counting steps, then `tests: N passed, M failed` counting the
//! tests that every libtest run reported (unit, integration, doc, trybuild and loom) plus
//! the real-Xen tests of every boot.

use crate::cmd::{self, Result, Workspace};
use crate::{abi, loom, realxen};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// One CI step.
struct Step<'a> {
    /// Its short name, in the summary.
    name: &'static str,
    /// What it does.
    run: Box<dyn Fn() -> Result + 'a>,
}

/// A cargo command run at the workspace root.
fn cargo_at(ws: &Workspace, args: &[&str]) -> Command {
    let mut cargo = cmd::cargo();
    cargo.current_dir(&ws.root).args(args);
    cargo
}

/// `RUSTDOCFLAGS` with `-D warnings` added to whatever the caller set.
fn rustdocflags() -> String {
    match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    }
}

/// The steps, in order.
fn steps(ws: &Workspace) -> Vec<Step<'_>> {
    let cargo_step = |name: &'static str, args: &'static [&'static str]| Step {
        name,
        run: Box::new(move || cmd::run(&mut cargo_at(ws, args))),
    };
    vec![
        cargo_step("fmt", &["fmt", "--all", "--", "--check"]),
        cargo_step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step {
            name: "doc",
            run: Box::new(move || {
                cmd::run(
                    cargo_at(ws, &["doc", "--workspace", "--no-deps", "--all-features"])
                        .env("RUSTDOCFLAGS", rustdocflags()),
                )
            }),
        },
        cargo_step("test", &["test", "--workspace", "--all-features"]),
        Step {
            name: "vchan-soak",
            run: Box::new(move || {
                cmd::run(
                    cargo_at(
                        ws,
                        &[
                            "test",
                            "--release",
                            "-p",
                            "xen-vchan",
                            "--test",
                            "soak",
                            "--",
                            "--nocapture",
                            "--test-threads=1",
                        ],
                    )
                    .env("XEN_VCHAN_SOAK", "full"),
                )
            }),
        },
        Step {
            name: "loom",
            run: Box::new(move || loom::run(ws, &[])),
        },
        Step {
            name: "abi",
            run: Box::new(move || abi::run(ws)),
        },
        // Real Xen under QEMU: fails (never skips) where QEMU, the Debian packages or a C
        // compiler cannot be had, and says which.
        Step {
            name: "realxen",
            run: Box::new(move || realxen::run(ws, &[])),
        },
    ]
}

/// How one step ended.
struct Outcome {
    /// The step's name.
    name: &'static str,
    /// Its error, if it failed.
    error: Option<String>,
    /// How long it took.
    time: Duration,
}

/// The summary table and the closing `ci: N passed, M failed` line.
fn summary(outcomes: &[Outcome]) -> String {
    let mut out = String::from("ci summary:\n  step     result   seconds\n");
    for o in outcomes {
        let result = if o.error.is_some() { "FAILED" } else { "ok" };
        out.push_str(&format!(
            "  {:<8} {:<8} {:>7.1}\n",
            o.name,
            result,
            o.time.as_secs_f64()
        ));
    }
    let total: Duration = outcomes.iter().map(|o| o.time).sum();
    out.push_str(&format!(
        "  {:<8} {:<8} {:>7.1}\n",
        "total",
        "",
        total.as_secs_f64()
    ));
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    out.push_str(&format!(
        "ci: {} passed, {failed} failed",
        outcomes.len() - failed
    ));
    out
}

/// Runs every step, prints the summary, and fails (exit status 1) if any step failed.
pub fn run(ws: &Workspace) -> ExitCode {
    let mut outcomes = Vec::new();
    for step in steps(ws) {
        println!("\n==> ci: {}", step.name);
        let start = Instant::now();
        let error = (step.run)().err();
        let time = start.elapsed();
        match &error {
            None => println!("<== ci: {} ok ({:.1}s)", step.name, time.as_secs_f64()),
            Some(e) => println!(
                "<== ci: {} FAILED ({:.1}s): {e}",
                step.name,
                time.as_secs_f64()
            ),
        }
        outcomes.push(Outcome {
            name: step.name,
            error,
            time,
        });
    }
    println!();
    for o in &outcomes {
        if let Some(e) = &o.error {
            println!("ci: {} failed: {e}", o.name);
        }
    }
    println!("{}", summary(&outcomes));
    let (passed, failed) = cmd::test_totals();
    println!("tests: {passed} passed, {failed} failed");
    if outcomes.iter().any(|o| o.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_order() {
        let ws = Workspace {
            root: ".".into(),
            target_dir: "target".into(),
            packages: Vec::new(),
        };
        let names: Vec<&str> = steps(&ws).iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "doc",
                "test",
                "vchan-soak",
                "loom",
                "abi",
                "realxen"
            ]
        );
    }

    #[test]
    fn summary_ends_with_the_counts() {
        let outcomes = [
            Outcome {
                name: "fmt",
                error: None,
                time: Duration::from_millis(1500),
            },
            Outcome {
                name: "loom",
                error: Some("no loom tests found".to_owned()),
                time: Duration::from_millis(20),
            },
        ];
        let s = summary(&outcomes);
        assert!(s.contains("  fmt      ok           1.5\n"), "{s}");
        assert!(s.contains("  loom     FAILED       0.0\n"), "{s}");
        assert!(s.contains("  total                 1.5\n"), "{s}");
        assert_eq!(s.lines().last(), Some("ci: 1 passed, 1 failed"));
    }
}
