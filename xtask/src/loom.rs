//! `cargo xtask loom`: the `cfg(loom)` models of every workspace package with `tests/loom.rs`.
//!
//! The models run in release mode (loom explores many interleavings) with
//! `RUSTFLAGS="--cfg loom"`, in their own target directory (`target/loom`) so that the flag
//! does not invalidate the normal build. `LOOM_MAX_PREEMPTIONS` defaults to 3.

use crate::cmd::{self, Package, Result, Workspace};

/// The preemption bound used unless `LOOM_MAX_PREEMPTIONS` is already set.
const DEFAULT_MAX_PREEMPTIONS: &str = "3";

/// The workspace packages that have a `tests/loom.rs`.
pub fn packages(ws: &Workspace) -> Vec<&Package> {
    ws.packages
        .iter()
        .filter(|p| p.dir.join("tests").join("loom.rs").is_file())
        .collect()
}

/// Runs every package's loom test (all of them, even after a failure), passing `test_args`
/// to the test binaries. Fails if any fails, and also if there is none: a step that checks
/// nothing must not pass.
pub fn run(ws: &Workspace, test_args: &[String]) -> Result {
    let packages = packages(ws);
    if packages.is_empty() {
        return Err(
            "no loom tests found: no workspace package has tests/loom.rs, so there is nothing \
             to model-check"
                .to_owned(),
        );
    }
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    println!("loom: models in {}", names.join(", "));

    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_owned(),
    };
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS")
        .unwrap_or_else(|_| DEFAULT_MAX_PREEMPTIONS.to_owned());
    let target_dir = ws.target_dir.join("loom");

    let mut failures = Vec::new();
    for package in packages {
        let mut cargo = cmd::cargo();
        cargo
            .current_dir(&ws.root)
            .env("RUSTFLAGS", &rustflags)
            .env("LOOM_MAX_PREEMPTIONS", &preemptions)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["test", "--release", "-p", &package.name, "--test", "loom"]);
        if !test_args.is_empty() {
            cargo.arg("--").args(test_args);
        }
        if let Err(e) = cmd::run(&mut cargo) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_packages_with_tests_loom_rs() {
        let dir = std::env::temp_dir().join(format!("xtask-loom-test-{}", std::process::id()));
        let with = dir.join("with");
        let without = dir.join("without");
        std::fs::create_dir_all(with.join("tests")).unwrap();
        std::fs::create_dir_all(without.join("tests")).unwrap();
        std::fs::write(with.join("tests").join("loom.rs"), "").unwrap();
        std::fs::write(without.join("tests").join("other.rs"), "").unwrap();
        let package = |name: &str, dir: &std::path::Path| Package {
            name: name.to_owned(),
            dir: dir.to_owned(),
        };
        let ws = Workspace {
            root: dir.clone(),
            target_dir: dir.join("target"),
            packages: vec![package("with", &with), package("without", &without)],
        };
        let found: Vec<&str> = packages(&ws).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(found, ["with"]);

        let empty = Workspace {
            packages: vec![package("without", &without)],
            ..ws
        };
        let err = run(&empty, &[]).unwrap_err();
        assert!(err.starts_with("no loom tests found"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
