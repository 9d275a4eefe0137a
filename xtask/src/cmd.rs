//! Running child processes and locating the workspace.
//!
//! Every failure message names the command that failed, as it could be typed into a shell.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Prints `cmd`, runs it with inherited stdio (its output appears live) and fails unless it
/// exits successfully.
pub fn run(cmd: &mut Command) -> Result {
    let shown = show(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
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
