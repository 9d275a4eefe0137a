//! `cargo xtask bench <name> [args...]`: runs a registered benchmark.
//!
//! A benchmark is a module `xtask/src/bench/<name>.rs` with
//! `pub fn run(ws: &Workspace, args: &[String]) -> Result`, registered by one line in the
//! `benches!` list below: `<name> => "what it measures",`.

use crate::cmd::{Result, Workspace};

/// What a benchmark runs, given the workspace and the arguments after its name.
pub type Runner = fn(&Workspace, &[String]) -> Result;

/// Declares the benchmark modules and `BENCHES`, the registry: (name, description, runner).
macro_rules! benches {
    ($($module:ident => $about:literal),* $(,)?) => {
        $(mod $module;)*

        /// Every registered benchmark: its name (its module's), what it measures, its runner.
        const BENCHES: &[(&str, &str, Runner)] = &[$((stringify!($module), $about, $module::run)),*];
    };
}

// One line per benchmark, e.g. `ring => "front/back ring round trips per second",`.
mod anchor;

benches! {
    ring => "front/back ring round trips per second, ours against Xen's ring.h in C",
    vchan => "vchan one-way throughput against a socketpair, a pipe and a C byte ring",
}

/// Runs the benchmark named by `args[0]` with the remaining arguments.
pub fn run(ws: &Workspace, args: &[String]) -> Result {
    let Some((name, rest)) = args.split_first() else {
        return Err(format!(
            "`cargo xtask bench` needs a benchmark name; {}",
            available()
        ));
    };
    match BENCHES.iter().find(|(n, ..)| n == name) {
        Some((_, _, runner)) => runner(ws, rest),
        None => Err(format!("unknown benchmark `{name}`; {}", available())),
    }
}

/// The registered benchmarks, for error messages and help.
pub fn available() -> String {
    let lines: Vec<String> = BENCHES
        .iter()
        .map(|(name, about, _)| format!("\n  {name:<12} {about}"))
        .collect();
    if lines.is_empty() {
        "no benchmarks are registered yet (see xtask/src/bench/mod.rs)".to_owned()
    } else {
        format!("available:{}", lines.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_or_missing_names_list_what_exists() {
        let ws = Workspace {
            root: ".".into(),
            target_dir: "target".into(),
            packages: Vec::new(),
        };
        let err = run(&ws, &["nope".to_owned()]).unwrap_err();
        assert!(err.starts_with("unknown benchmark `nope`; "), "{err}");
        assert!(err.ends_with(&available()));
        let err = run(&ws, &[]).unwrap_err();
        assert!(
            err.starts_with("`cargo xtask bench` needs a benchmark name"),
            "{err}"
        );
    }
}
