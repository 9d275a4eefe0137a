//! Runs every case under `tests/ui/`: each must fail to compile with exactly the error in its
//! `.stderr` file (expectations written against the toolchain pinned in the workspace metadata,
//! `pinned-stable`). Regenerate with `TRYBUILD=overwrite cargo test -p compile-fail` and read
//! every changed `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
