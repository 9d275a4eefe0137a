//! Reading the serial console: the result lines the dom0 init and the interop binary print.

use std::time::Duration;

/// Printed by our dom0 init once xenstored and the devices are ready.
pub const READY: &str = "REALXEN-READY";
/// Printed by the interop binary after its last test.
pub const DONE: &str = "REALXEN-DONE";
/// Prefix of a figure a test reports (shown on the host, not parsed).
pub const INFO: &str = "REALXEN-INFO ";
/// Prefix of one test's result line.
pub const TEST: &str = "REALXEN-TEST ";

/// One test's outcome as printed on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestLine {
    /// The test name.
    pub name: String,
    /// Passed?
    pub pass: bool,
    /// `(N ms)` for a pass, the reason for a failure.
    pub detail: String,
}

/// Parses `REALXEN-TEST <name> PASS (<ms> ms)` / `REALXEN-TEST <name> FAIL: <why>` anywhere
/// in a console line (Xen or the kernel may prefix it).
pub fn parse_test_line(line: &str) -> Option<TestLine> {
    let rest = &line[line.find(TEST)? + TEST.len()..];
    let (name, verdict) = rest.split_once(' ')?;
    if let Some(d) = verdict.strip_prefix("PASS") {
        Some(TestLine {
            name: name.to_owned(),
            pass: true,
            detail: d.trim().to_owned(),
        })
    } else {
        verdict.strip_prefix("FAIL").map(|d| TestLine {
            name: name.to_owned(),
            pass: false,
            detail: d.trim_start_matches(':').trim().to_owned(),
        })
    }
}

/// What one boot printed, as far as the harness cares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Test lines, in order.
    pub tests: Vec<TestLine>,
    /// When dom0 said it was ready.
    pub ready_at: Option<Duration>,
    /// Whether the interop binary finished.
    pub done: bool,
}

impl Outcome {
    /// Feeds one console line seen at `at` since QEMU started.
    pub fn feed(&mut self, line: &str, at: Duration) {
        if let Some(t) = parse_test_line(line) {
            self.tests.push(t);
        } else if line.contains(READY) && self.ready_at.is_none() {
            self.ready_at = Some(at);
        } else if line.contains(DONE) {
            self.done = true;
        }
    }

    /// True when the binary finished and every test passed.
    pub fn passed(&self) -> bool {
        self.done && !self.tests.is_empty() && self.tests.iter().all(|t| t.pass)
    }

    /// True when not a single result line appeared: the boot itself failed.
    pub fn boot_failed(&self) -> bool {
        self.tests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines() {
        assert_eq!(
            parse_test_line("(XEN) x REALXEN-TEST grant_copy PASS (12 ms)"),
            Some(TestLine {
                name: "grant_copy".into(),
                pass: true,
                detail: "(12 ms)".into()
            })
        );
        assert_eq!(
            parse_test_line("REALXEN-TEST ev FAIL: round 3: a got []"),
            Some(TestLine {
                name: "ev".into(),
                pass: false,
                detail: "round 3: a got []".into()
            })
        );
        assert_eq!(parse_test_line("REALXEN-TEST ev MAYBE"), None);
        assert_eq!(parse_test_line("REALXEN-TEST"), None);
        assert_eq!(parse_test_line("nothing"), None);
    }

    #[test]
    fn outcomes() {
        let mut o = Outcome::default();
        assert!(o.boot_failed() && !o.passed());
        o.feed("REALXEN-READY", Duration::from_secs(9));
        o.feed("REALXEN-TEST a PASS (1 ms)", Duration::from_secs(10));
        assert!(!o.passed(), "not done yet");
        o.feed("REALXEN-DONE pass=1 fail=0", Duration::from_secs(11));
        assert!(o.passed());
        assert_eq!(o.ready_at, Some(Duration::from_secs(9)));
        o.feed("REALXEN-TEST b FAIL: no", Duration::from_secs(12));
        assert!(!o.passed() && !o.boot_failed());
    }
}
