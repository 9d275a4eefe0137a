//! The `xensim` command line: the demo checks its own claims and exits 0; bad arguments are
//! a usage error, not a panic.

use std::process::Command;

fn xensim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xensim"))
        .args(args)
        .output()
        .expect("run xensim")
}

#[test]
fn demo_runs_to_completion() {
    let out = xensim(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("end-access while mapped: 4 busy"));
    assert!(stdout.contains("reclaim pass 3: 0 ended, 1 still busy"));
    assert!(stdout.contains("reclaim queue empty: true"));
    assert!(stdout.contains("vchan: 16 MiB streamed in"));
    assert!(stdout.contains("18 grants ended, xenstore entries removed: true"));
}

#[test]
fn unknown_arguments_are_a_usage_error() {
    for args in [&[][..], &["frobnicate"], &["demo", "extra"], &["\u{7f}--"]] {
        let out = xensim(args);
        assert_eq!(out.status.code(), Some(2), "args {args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: xensim"));
    }
}
