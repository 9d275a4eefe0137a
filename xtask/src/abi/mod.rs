//! `cargo xtask abi`: the Rust wire definitions against Xen's real C headers.
//!
//! Each crate with a wire ABI has a table module here (`gnttab.rs`, ...) listing items: a
//! Rust value computed from the crate's definitions and the C expression that must equal it.
//! This driver generates one C program from all tables (into `target/xtask/abi/abi.c`),
//! compiles it with `cc` against `/usr/include/xen` (Debian's `libxen-dev`, installed on
//! demand), runs it, and compares its `NAME VALUE` lines with the Rust values name by name.
//! It also lists the macros the headers define under each table's covered prefixes, so a
//! constant the Rust side does not mirror is reported too.
//!
//! # Adding a crate's table
//!
//! 1. Write `xtask/src/abi/<crate>.rs` with `pub fn table() -> AbiTable` (see `gnttab.rs`:
//!    `table::abi_struct!`, `table::typedef!`, [`AbiTable::constant`], and
//!    [`AbiTable::prelude`] for C declarations such as a `DEFINE_RING_TYPES` instance).
//! 2. Add its name to the `tables!` list below, and the crate to `xtask/Cargo.toml`.

pub mod table;

use crate::cmd::{self, Result, Workspace};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use table::AbiTable;

/// Declares the table modules and [`tables`], which builds them all in order.
macro_rules! tables {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every registered table, in order.
        pub fn tables() -> Vec<AbiTable> {
            vec![$($module::table()),*]
        }
    };
}

// One line per crate.
tables! {
    gnttab,
    linux,
    ring,
    vchan,
}

/// Where the system headers are looked for before compiling.
const INCLUDE_DIR: &str = "/usr/include";
/// The Debian package providing Xen's public headers and `xenctrl.h`.
const HEADERS_PACKAGE: &str = "libxen-dev";
/// The C dialect: the headers reached through `xenctrl.h` use GNU anonymous unions.
const C_STD: &str = "-std=gnu11";

/// Runs the check: installs the headers if needed, builds and runs the C program, compares.
pub fn run(ws: &Workspace) -> Result {
    let tables = tables();
    check_names(&tables)?;
    ensure_headers(&tables)?;
    if let Some(version) = package_version() {
        println!("abi: Xen headers from {HEADERS_PACKAGE} {version}");
    }

    let dir = ws.target_dir.join("xtask").join("abi");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let source = dir.join("abi.c");
    std::fs::write(&source, generate_c(&tables))
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let exe = dir.join("abi");

    cmd::run(
        compiler()
            .args([C_STD, "-Wall", "-o"])
            .arg(&exe)
            .arg(&source),
    )
    .map_err(|e| format!("{e}\n(the generated program is {})", source.display()))?;
    let macros = cmd::output(compiler().args([C_STD, "-E", "-dM"]).arg(&source))?;
    let printed = cmd::output(&mut Command::new(&exe))?;

    let c = parse_output(&printed)?;
    for info in &c.info {
        println!("abi: {info}");
    }
    let report = compare(&tables, &c.values, &object_macros(&macros));
    for line in report.lines() {
        println!("abi: {line}");
    }
    if report.is_ok() {
        let exempt: Vec<&str> = tables
            .iter()
            .flat_map(|t| t.not_mirrored.iter().map(|(name, _)| *name))
            .collect();
        if !exempt.is_empty() {
            println!("abi: deliberately not mirrored: {}", exempt.join(", "));
        }
        println!("abi: {} items match", report.matched);
        Ok(())
    } else {
        Err(format!(
            "abi check failed: {} ({} items; the C program is {})",
            report.summary(),
            report.total,
            source.display()
        ))
    }
}

/// The C compiler: `$CC`, or `cc`.
fn compiler() -> Command {
    Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
}

/// The installed version of the headers package, when `dpkg-query` knows it.
fn package_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", HEADERS_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// Names must be unique across tables and free of whitespace (the output is `NAME VALUE`).
fn check_names(tables: &[AbiTable]) -> Result {
    let mut seen = BTreeSet::new();
    for item in tables.iter().flat_map(|t| &t.items) {
        if item.name.is_empty() || item.name.chars().any(char::is_whitespace) {
            return Err(format!(
                "ABI item name {:?} is empty or has whitespace",
                item.name
            ));
        }
        if !seen.insert(item.name.as_str()) {
            return Err(format!("ABI item {} is listed twice", item.name));
        }
    }
    Ok(())
}

/// Installs `libxen-dev` with apt-get when a header of some table is missing.
fn ensure_headers(tables: &[AbiTable]) -> Result {
    let missing = || -> Vec<String> {
        let all: BTreeSet<&str> = tables.iter().flat_map(|t| t.headers.clone()).collect();
        all.into_iter()
            .map(|h| Path::new(INCLUDE_DIR).join(h))
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect()
    };
    let before = missing();
    if before.is_empty() {
        return Ok(());
    }
    let before = before.join(", ");
    println!("abi: {before} not found; installing Debian's {HEADERS_PACKAGE}");
    let install = || -> Result {
        cmd::run(Command::new("apt-get").arg("update"))?;
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", HEADERS_PACKAGE]),
        )
    };
    install().map_err(|e| {
        format!(
            "Xen's headers are missing ({before}) and installing {HEADERS_PACKAGE} failed: {e}\n\
             Install Xen's public headers (Debian/Ubuntu, as root: \
             `apt-get install {HEADERS_PACKAGE}`) and rerun `cargo xtask abi`."
        )
    })?;
    let after = missing();
    if after.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`apt-get install -y {HEADERS_PACKAGE}` succeeded but {} still do not exist",
            after.join(", ")
        ))
    }
}

/// A C string literal for `s`.
fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The C program: includes every table's headers and preludes, prints every item with a C
/// expression as `NAME VALUE`, and informational lines starting with `#`.
fn generate_c(tables: &[AbiTable]) -> String {
    let mut c = String::from(
        "/* Generated by `cargo xtask abi` from xtask/src/abi/: do not edit. */\n\
         \n\
         /*\n \
         * Ask for the latest interface version (__XEN_LATEST_INTERFACE_VERSION__), the one the\n \
         * hypervisor implements, as Xen's own tools do. Without it xen-compat.h selects the\n \
         * legacy interface 0, where `struct grant_entry_v1` is `struct grant_entry` and\n \
         * GNTTABOP_set_version and later do not exist.\n \
         */\n\
         #define __XEN_TOOLS__ 1\n\
         \n\
         #include <stddef.h>\n\
         #include <stdint.h>\n\
         #include <stdio.h>\n\n",
    );
    let mut included = BTreeSet::new();
    for header in tables.iter().flat_map(|t| &t.headers) {
        if included.insert(header) {
            let _ = writeln!(c, "#include <{header}>");
        }
    }
    for table in tables.iter().filter(|t| !t.prelude.is_empty()) {
        let _ = write!(c, "\n/* {} */\n{}", table.name, table.prelude);
    }
    c.push_str(
        "\n\
         /* 1: signed integer, 0: unsigned integer, -1: anything else (struct, union, array). */\n\
         #define XTASK_SIGNEDNESS(x) _Generic((x), \\\n    \
             char: ((char)-1 < 0), _Bool: 0, \\\n    \
             signed char: 1, short: 1, int: 1, long: 1, long long: 1, \\\n    \
             unsigned char: 0, unsigned short: 0, unsigned int: 0, unsigned long: 0, \\\n    \
             unsigned long long: 0, \\\n    \
             default: -1)\n\
         \n\
         #define XTASK_EMIT(name, expr) \\\n    \
             ((expr) < 0 ? printf(\"%s %lld\\n\", (name), (long long)(expr)) \\\n                \
             : printf(\"%s %llu\\n\", (name), (unsigned long long)(expr)))\n\
         \n\
         int main(void)\n\
         {\n\
         #ifdef __XEN_INTERFACE_VERSION__\n    \
             printf(\"# __XEN_INTERFACE_VERSION__ 0x%08x\\n\", (unsigned)__XEN_INTERFACE_VERSION__);\n\
         #endif\n",
    );
    for table in tables {
        let _ = writeln!(c, "\n    /* {} */", table.name);
        for item in &table.items {
            if let Some(expr) = &item.c_expr {
                let _ = writeln!(c, "    XTASK_EMIT({}, {expr});", c_string(&item.name));
            }
        }
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// What the C program printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct COutput {
    /// `NAME VALUE` lines.
    values: BTreeMap<String, i128>,
    /// `#` lines, without the `#`.
    info: Vec<String>,
}

/// Parses the C program's output; malformed or repeated lines are errors.
fn parse_output(out: &str) -> Result<COutput> {
    let mut parsed = COutput::default();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(info) = line.strip_prefix('#') {
            parsed.info.push(info.trim().to_owned());
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("the ABI program printed a malformed line: {line:?}"))?;
        let value: i128 = value
            .parse()
            .map_err(|_| format!("the ABI program printed a malformed value: {line:?}"))?;
        if parsed.values.insert(name.to_owned(), value).is_some() {
            return Err(format!("the ABI program printed {name} twice"));
        }
    }
    Ok(parsed)
}

/// The object-like macros in `cc -E -dM` output, with their definitions.
fn object_macros(dm: &str) -> BTreeMap<String, String> {
    dm.lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, body) = rest.split_at(end);
            // A function-like macro has `(` right after its name.
            (!name.is_empty() && !body.starts_with('('))
                .then(|| (name.to_owned(), body.trim().to_owned()))
        })
        .collect()
}

/// The outcome of the comparison.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    /// Items in both with equal values.
    matched: usize,
    /// All items the tables list.
    total: usize,
    /// Items whose values differ.
    mismatches: Vec<String>,
    /// Items the C side did not print.
    rust_only: Vec<String>,
    /// Values the C side printed or macros it defines that no item mirrors.
    c_only: Vec<String>,
    /// Exemptions naming macros that are not defined, or are mirrored after all.
    stale: Vec<String>,
}

impl Report {
    /// True when everything matched.
    fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
            && self.rust_only.is_empty()
            && self.c_only.is_empty()
            && self.stale.is_empty()
    }

    /// One line per problem.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.mismatches.iter().map(|m| format!("MISMATCH {m}")));
        lines.extend(self.rust_only.iter().map(|m| format!("only in Rust: {m}")));
        lines.extend(self.c_only.iter().map(|m| format!("only in C: {m}")));
        lines.extend(self.stale.iter().map(|m| format!("stale exemption: {m}")));
        lines
    }

    /// The counts of each kind of problem.
    fn summary(&self) -> String {
        format!(
            "{} mismatched, {} only in Rust, {} only in C, {} stale exemptions",
            self.mismatches.len(),
            self.rust_only.len(),
            self.c_only.len(),
            self.stale.len()
        )
    }
}

/// Compares the tables with what the C program printed (`values`) and the headers' object-like
/// macros (`macros`).
fn compare(
    tables: &[AbiTable],
    values: &BTreeMap<String, i128>,
    macros: &BTreeMap<String, String>,
) -> Report {
    let mut report = Report::default();
    let mut listed = BTreeSet::new();
    for table in tables {
        for item in &table.items {
            report.total += 1;
            listed.insert(item.name.as_str());
            match (&item.c_expr, values.get(&item.name)) {
                (None, _) => report.rust_only.push(format!(
                    "{} = {} (no C counterpart known; add one in xtask/src/abi/{}.rs)",
                    item.name, item.rust, table.name
                )),
                (Some(expr), None) => report.rust_only.push(format!(
                    "{} = {} (the C program printed nothing for `{expr}`)",
                    item.name, item.rust
                )),
                (Some(expr), Some(&c)) if c != item.rust => report.mismatches.push(format!(
                    "{}: Rust {}, C `{expr}` = {c}",
                    item.name, item.rust
                )),
                (Some(_), Some(_)) => report.matched += 1,
            }
        }

        let mirrored: BTreeSet<&str> = table
            .items
            .iter()
            .filter_map(|i| i.c_expr.as_deref())
            .map(str::trim)
            .collect();
        let exempt: BTreeSet<&str> = table.not_mirrored.iter().map(|(n, _)| *n).collect();
        for (name, body) in macros {
            let covered = table
                .covered_prefixes
                .iter()
                .find(|p| name.starts_with(**p));
            if let Some(prefix) = covered {
                if !mirrored.contains(name.as_str()) && !exempt.contains(name.as_str()) {
                    report.c_only.push(format!(
                        "{name} = {body} (the headers define it under {prefix}, which {} \
                         mirrors: add it to the Rust ABI and xtask/src/abi/{}.rs, or list it \
                         there as not mirrored)",
                        table.name, table.name
                    ));
                }
            }
        }
        for (name, _) in &table.not_mirrored {
            if !macros.contains_key(*name) {
                report.stale.push(format!(
                    "{name} (listed as not mirrored by {}, but the headers do not define it)",
                    table.name
                ));
            } else if mirrored.contains(name) {
                report.stale.push(format!(
                    "{name} (listed as not mirrored by {}, but an item mirrors it)",
                    table.name
                ));
            }
        }
    }
    for (name, value) in values {
        if !listed.contains(name.as_str()) {
            report.c_only.push(format!(
                "{name} = {value} (printed by the C program, no Rust item)"
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AbiTable {
        let mut t = AbiTable::new("t");
        t.include("xen/xen.h")
            .cover("GTF_")
            .not_mirrored("GTF_old", "test")
            .constant("A", "GTF_a", 1u16)
            .constant("B", "GTF_b", -2i16)
            .constant("C", "sizeof(int)", 4usize);
        t.item("D", None, 7u8);
        t
    }

    fn values(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    fn macros(names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "1".to_owned()))
            .collect()
    }

    #[test]
    fn registered_tables_are_well_formed() {
        let tables = tables();
        check_names(&tables).unwrap();
        for table in &tables {
            assert!(!table.items.is_empty(), "{} is empty", table.name);
            for item in &table.items {
                assert!(item.name.starts_with(&format!("{}.", table.name)));
            }
        }
    }

    #[test]
    fn c_program_prints_every_item_with_a_c_expression() {
        let tables = [table()];
        let c = generate_c(&tables);
        assert!(c.contains("#define __XEN_TOOLS__ 1\n"));
        assert!(c.contains("#include <xen/xen.h>\n"));
        assert!(c.contains("XTASK_EMIT(\"t.A\", GTF_a);"));
        assert!(c.contains("XTASK_EMIT(\"t.B\", GTF_b);"));
        assert!(c.contains("XTASK_EMIT(\"t.C\", sizeof(int));"));
        assert!(!c.contains("\"t.D\""));
        assert_eq!(c_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut t = table();
        t.constant("A", "GTF_a", 1u16);
        assert!(
            check_names(&[t])
                .unwrap_err()
                .contains("t.A is listed twice")
        );
    }

    #[test]
    fn output_parsing() {
        let out = "# __XEN_INTERFACE_VERSION__ 0x00040e00\nt.A 1\nt.B -2\n\n";
        let parsed = parse_output(out).unwrap();
        assert_eq!(parsed.info, ["__XEN_INTERFACE_VERSION__ 0x00040e00"]);
        assert_eq!(parsed.values, values(&[("t.A", 1), ("t.B", -2)]));
        assert!(parse_output("t.A\n").is_err());
        assert!(parse_output("t.A x\n").is_err());
        assert!(parse_output("t.A 1\nt.A 1\n").is_err());
        let max = parse_output("t.U 18446744073709551615\n").unwrap();
        assert_eq!(max.values["t.U"], i128::from(u64::MAX));
    }

    #[test]
    fn macro_listing_skips_function_like_macros() {
        let dm = "#define GTF_a (1U<<0)\n#define GTF_f(x) x\n#define GTF_e\n#undef X\n";
        let m = object_macros(dm);
        assert_eq!(m.len(), 2);
        assert_eq!(m["GTF_a"], "(1U<<0)");
        assert_eq!(m["GTF_e"], "");
    }

    #[test]
    fn all_equal_passes_except_rust_only_items() {
        let tables = [table()];
        let r = compare(
            &tables,
            &values(&[("t.A", 1), ("t.B", -2), ("t.C", 4)]),
            &macros(&["GTF_a", "GTF_b", "GTF_old", "OTHER_x"]),
        );
        assert_eq!(r.matched, 3);
        assert_eq!(r.total, 4);
        assert_eq!(r.rust_only.len(), 1, "{r:?}");
        assert!(r.rust_only[0].starts_with("t.D = 7 (no C counterpart"));
        assert!(r.mismatches.is_empty() && r.c_only.is_empty() && r.stale.is_empty());
        assert!(!r.is_ok());
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let mut t = table();
        t.items.pop();
        let r = compare(
            &[t],
            &values(&[("t.A", 1), ("t.B", 65534), ("t.X", 9)]),
            &macros(&["GTF_a", "GTF_b", "GTF_new"]),
        );
        assert_eq!(r.matched, 1);
        assert_eq!(r.mismatches, ["t.B: Rust -2, C `GTF_b` = 65534"]);
        assert_eq!(r.rust_only.len(), 1);
        assert!(r.rust_only[0].starts_with("t.C = 4 (the C program printed nothing"));
        assert_eq!(r.c_only.len(), 2);
        assert!(r.c_only[0].starts_with("GTF_new = 1 (the headers define it under GTF_"));
        assert!(r.c_only[1].starts_with("t.X = 9 (printed by the C program"));
        assert_eq!(r.stale.len(), 1);
        assert!(r.stale[0].starts_with("GTF_old"));
        assert_eq!(
            r.summary(),
            "1 mismatched, 1 only in Rust, 2 only in C, 1 stale exemptions"
        );
        assert_eq!(r.lines().len(), 5);
        assert!(!r.is_ok());
    }

    #[test]
    fn a_clean_comparison_is_ok() {
        let mut t = table();
        t.items.pop();
        let r = compare(
            &[t],
            &values(&[("t.A", 1), ("t.B", -2), ("t.C", 4)]),
            &macros(&["GTF_a", "GTF_b", "GTF_old"]),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((r.matched, r.total), (3, 3));
    }
}
