//! Running child processes and locating the workspace.
//!
//! Every failure message names the command that failed, as it could be typed into a shell.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The error type of every task: a message for the user, already naming what failed.
pub type Error = String;

/// The result type of every task.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// A `cargo` command: the cargo that runs this xtask (`$CARGO`), so the same toolchain is used.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Renders `cmd` the way a user would type it: explicitly set environment variables first,
/// then the program and its arguments, quoted where a shell would need it.
pub fn show(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    // `$CARGO` is an absolute path into the toolchain; `cargo` reads better and means the same.
    let program = cmd.get_program();
    let program_name = Path::new(program).file_name().unwrap_or(program);
    if program_name == "cargo" {
        parts.push("cargo".to_owned());
    } else {
        parts.push(quote(program));
    }
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// Quotes one word for a POSIX shell if it needs it.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Tests counted from every `test result:` line that a command run by [`run`] printed.
static TESTS_PASSED: AtomicU64 = AtomicU64::new(0);
/// Failed tests, likewise.
static TESTS_FAILED: AtomicU64 = AtomicU64::new(0);

/// `(passed, failed)` summed over every libtest `test result:` line seen so far.
pub fn test_totals() -> (u64, u64) {
    (
        TESTS_PASSED.load(Ordering::Relaxed),
        TESTS_FAILED.load(Ordering::Relaxed),
    )
}

/// Adds tests that ran outside libtest (the real-Xen suite) to the totals.
pub fn add_tests(passed: u64, failed: u64) {
    TESTS_PASSED.fetch_add(passed, Ordering::Relaxed);
    TESTS_FAILED.fetch_add(failed, Ordering::Relaxed);
}

/// Reads `test result: ok. 13 passed; 0 failed; ...` into `(13, 0)`.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let n = words.next()?.parse::<u64>().ok();
        match words.next() {
            Some("passed") => passed = n,
            Some("failed") => failed = n,
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// Prints `cmd`, runs it (its output appears live, standard output echoed line by line so
/// that test counts can be tallied) and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result {
    let shown = show(cmd);
    println!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if let Some((p, f)) = parse_test_result(&line) {
                TESTS_PASSED.fetch_add(p, Ordering::Relaxed);
                TESTS_FAILED.fetch_add(f, Ordering::Relaxed);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("could not wait for `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed: {status}"))
    }
}

/// Runs `cmd` quietly and returns its standard output; its standard error is passed through.
/// Fails unless it exits successfully or its output is not UTF-8.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{shown}` failed: {}", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{shown}` printed something not UTF-8"))
}

/// Runs `cmd` quietly and returns its standard output as bytes; its standard error is passed
/// through. Fails unless it exits successfully.
pub fn output_bytes(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("`{shown}` failed: {}", out.status))
    }
}

/// A workspace member package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The package name (`xen-gnttab`).
    pub name: String,
    /// The directory holding its `Cargo.toml`.
    pub dir: PathBuf,
}

/// The workspace as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The directory of the workspace `Cargo.toml`; child commands run there.
    pub root: PathBuf,
    /// The build directory (`target/`, or wherever `CARGO_TARGET_DIR` or config puts it).
    pub target_dir: PathBuf,
    /// The member packages, sorted by name.
    pub packages: Vec<Package>,
}

impl Workspace {
    /// Asks `cargo metadata --no-deps` (no dependency resolution, no network) about the
    /// workspace this xtask belongs to.
    pub fn load() -> Result<Workspace> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask is not inside a workspace")?
            .join("Cargo.toml");
        let mut cmd = cargo();
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest);
        let json = output(&mut cmd)?;
        Self::parse(&json).map_err(|e| format!("cannot read the output of `{}`: {e}", show(&cmd)))
    }

    /// Extracts the workspace from `cargo metadata` JSON.
    fn parse(json: &str) -> Result<Workspace> {
        let meta: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let string = |v: &serde_json::Value, key: &str| -> Result<String> {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("no string field `{key}`"))
        };
        let members: Vec<&str> = meta
            .get("workspace_members")
            .and_then(serde_json::Value::as_array)
            .ok_or("no `workspace_members`")?
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let mut packages = Vec::new();
        for pkg in meta
            .get("packages")
            .and_then(serde_json::Value::as_array)
            .ok_or("no `packages`")?
        {
            if !members.contains(&string(pkg, "id")?.as_str()) {
                continue;
            }
            let manifest = PathBuf::from(string(pkg, "manifest_path")?);
            let dir = manifest
                .parent()
                .ok_or_else(|| format!("manifest path {} has no parent", manifest.display()))?
                .to_path_buf();
            packages.push(Package {
                name: string(pkg, "name")?,
                dir,
            });
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Workspace {
            root: string(&meta, "workspace_root")?.into(),
            target_dir: string(&meta, "target_directory")?.into(),
            packages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("cc");
        cmd.args(["-o", "a b", "it's", ""])
            .env("RUSTFLAGS", "--cfg loom");
        assert_eq!(
            show(&cmd),
            r"RUSTFLAGS='--cfg loom' cc -o 'a b' 'it'\''s' ''"
        );
        let mut cmd = Command::new("/opt/rust/bin/cargo");
        cmd.args(["test", "-p", "xen-gnttab"]);
        assert_eq!(show(&cmd), "cargo test -p xen-gnttab");
    }

    #[test]
    fn metadata_members_only() {
        let json = r#"{
            "packages": [
                {"id": "a 0.1", "name": "xen-a", "manifest_path": "/w/a/Cargo.toml"},
                {"id": "dep 1.0", "name": "dep", "manifest_path": "/r/dep/Cargo.toml"}
            ],
            "workspace_members": ["a 0.1"],
            "workspace_root": "/w",
            "target_directory": "/w/target"
        }"#;
        let ws = Workspace::parse(json).unwrap();
        assert_eq!(ws.root, Path::new("/w"));
        assert_eq!(ws.target_dir, Path::new("/w/target"));
        assert_eq!(
            ws.packages,
            vec![Package {
                name: "xen-a".into(),
                dir: "/w/a".into()
            }]
        );
        assert!(Workspace::parse("{}").is_err());
    }

    #[test]
    fn test_result_lines_are_tallied() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s"
            ),
            Some((13, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 1 passed; 2 failed; 0 ignored"),
            Some((1, 2))
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
        assert_eq!(
            parse_test_result("test result: ok. many passed; 0 failed"),
            None
        );
    }

    #[test]
    fn failures_name_the_command() {
        let err = run(Command::new("false").arg("x")).unwrap_err();
        assert!(err.starts_with("`false x` failed"), "{err}");
        let err = output(&mut Command::new("/nonexistent/xtask-test")).unwrap_err();
        assert!(
            err.starts_with("could not start `/nonexistent/xtask-test`"),
            "{err}"
        );
    }
}
