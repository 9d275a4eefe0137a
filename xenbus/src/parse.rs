//! Typed parsers for untrusted xenstore values.
//!
//! A peer (or a hostile domain with write access to a node) can put anything in a value:
//! garbage, a huge string, a number out of range. Every parser here takes the raw bytes and
//! the path they came from, accepts only the canonical form (ASCII decimal digits for numbers,
//! no sign, no whitespace, no NUL), checks a length bound *before* looking at the content,
//! and reports every failure as [`XenbusError::Parse`] naming the path.

use crate::error::{ParseErrorKind, XenbusError};
use crate::path;
use crate::state::XenbusState;
use alloc::string::String;
use xen_gnttab::{Domid, GrantRef};

/// Longest decimal number accepted (`u64::MAX` has 20 digits).
pub const MAX_DECIMAL_LEN: usize = 20;

/// Largest event-channel port on any Xen ABI (`EVTCHN_FIFO_NR_CHANNELS - 1`).
pub const MAX_PORT: u32 = (1 << 17) - 1;

fn err(path: &str, kind: ParseErrorKind) -> XenbusError {
    XenbusError::Parse {
        path: String::from(path),
        kind,
    }
}

/// Checks a value's length against `max` and that it is not empty.
pub fn bounded<'v>(path: &str, value: &'v [u8], max: usize) -> Result<&'v [u8], XenbusError> {
    if value.len() > max {
        return Err(err(
            path,
            ParseErrorKind::TooLong {
                len: value.len(),
                max,
            },
        ));
    }
    if value.is_empty() {
        return Err(err(path, ParseErrorKind::Empty));
    }
    Ok(value)
}

/// A non-negative decimal integer in `min..=max`.
pub fn uint(path: &str, value: &[u8], min: u64, max: u64) -> Result<u64, XenbusError> {
    let digits = bounded(path, value, MAX_DECIMAL_LEN)?;
    let mut v: u64 = 0;
    let mut overflow = false;
    for (at, &byte) in digits.iter().enumerate() {
        if !byte.is_ascii_digit() {
            return Err(err(path, ParseErrorKind::InvalidByte { byte, at }));
        }
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(byte - b'0')))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
    }
    if overflow {
        v = u64::MAX;
    }
    if overflow || v < min || v > max {
        return Err(err(path, ParseErrorKind::OutOfRange { value: v, min, max }));
    }
    Ok(v)
}

/// A `u32`.
pub fn u32_value(path: &str, value: &[u8]) -> Result<u32, XenbusError> {
    // The range check makes the narrowing lossless.
    uint(path, value, 0, u64::from(u32::MAX)).map(|v| v as u32)
}

/// A feature flag: `"0"` or `"1"` exactly.
pub fn flag(path: &str, value: &[u8]) -> Result<bool, XenbusError> {
    uint(path, value, 0, 1).map(|v| v == 1)
}

/// A `XenbusState` (`"0"`..=`"8"`).
pub fn state(path: &str, value: &[u8]) -> Result<XenbusState, XenbusError> {
    let v = uint(path, value, 0, 8)?;
    XenbusState::from_u64(v).ok_or_else(|| {
        err(
            path,
            ParseErrorKind::OutOfRange {
                value: v,
                min: 0,
                max: 8,
            },
        )
    })
}

/// A real domain id (below `DOMID_FIRST_RESERVED`).
pub fn domid(path: &str, value: &[u8]) -> Result<Domid, XenbusError> {
    let max = u64::from(Domid::FIRST_RESERVED.0) - 1;
    uint(path, value, 0, max).map(|v| Domid(v as u16))
}

/// An event-channel port published by a peer: `1..=MAX_PORT` (port 0 is never valid).
pub fn port(path: &str, value: &[u8]) -> Result<crate::evtchn::Port, XenbusError> {
    uint(path, value, 1, u64::from(MAX_PORT)).map(|v| crate::evtchn::Port(v as u32))
}

/// A grant reference published by a peer: non-zero (ref 0 is the toolstack's console page,
/// never a ring).
pub fn grant_ref(path: &str, value: &[u8]) -> Result<GrantRef, XenbusError> {
    uint(path, value, 1, u64::from(u32::MAX)).map(|v| GrantRef(v as u32))
}

/// A printable-ASCII string of at most `max` bytes (no control bytes, no NUL).
pub fn text<'v>(path: &str, value: &'v [u8], max: usize) -> Result<&'v str, XenbusError> {
    let v = bounded(path, value, max)?;
    if let Some(at) = v.iter().position(|b| !(0x20..0x7f).contains(b)) {
        return Err(err(path, ParseErrorKind::InvalidByte { byte: v[at], at }));
    }
    // Printable ASCII is valid UTF-8; the fallback cannot be taken.
    core::str::from_utf8(v).map_err(|_| err(path, ParseErrorKind::InvalidByte { byte: 0, at: 0 }))
}

/// An absolute xenstore path (e.g. a `backend` or `frontend` key), syntax-checked.
pub fn abs_path<'v>(path: &str, value: &'v [u8]) -> Result<&'v str, XenbusError> {
    let s = text(path, value, path::ABS_PATH_MAX)?;
    match path::check(s) {
        Ok(()) if s.starts_with('/') => Ok(s),
        _ => {
            let at = path::first_bad_byte(s).unwrap_or(0);
            Err(err(
                path,
                ParseErrorKind::InvalidByte {
                    byte: s.as_bytes().get(at).copied().unwrap_or(0),
                    at,
                },
            ))
        }
    }
}

/// A key whose value is one of a fixed set of words (e.g. blkif's `protocol`).
pub trait XsEnum: Sized {
    /// What the key holds, for error messages.
    const WHAT: &'static str;
    /// Longest accepted word.
    const MAX_LEN: usize;
    /// The value for `word`, if it is one.
    fn from_word(word: &[u8]) -> Option<Self>;
}

/// Parses an enumerated key.
pub fn enumerated<E: XsEnum>(path: &str, value: &[u8]) -> Result<E, XenbusError> {
    let v = bounded(path, value, E::MAX_LEN)?;
    E::from_word(v).ok_or_else(|| err(path, ParseErrorKind::UnknownValue { what: E::WHAT }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict_and_bounded() {
        assert_eq!(uint("p", b"42", 0, 100), Ok(42));
        assert_eq!(uint("p", b"007", 0, 100), Ok(7));
        for bad in [&b" 1"[..], b"+1", b"-1", b"1\0", b"0x10", b"1 ", b"\xff"] {
            let e = uint("p", bad, 0, 100).unwrap_err();
            assert!(
                matches!(e.parse_kind(), Some(ParseErrorKind::InvalidByte { .. })),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(
            uint("p", b"", 0, 1).unwrap_err().parse_kind(),
            Some(&ParseErrorKind::Empty)
        );
        assert!(matches!(
            uint("p", b"99999999999999999999", 0, u64::MAX)
                .unwrap_err()
                .parse_kind(),
            Some(ParseErrorKind::OutOfRange {
                value: u64::MAX,
                ..
            })
        ));
        assert!(matches!(
            uint("p", &[b'1'; 21], 0, u64::MAX)
                .unwrap_err()
                .parse_kind(),
            Some(ParseErrorKind::TooLong { len: 21, max: 20 })
        ));
        assert_eq!(
            uint("p", b"18446744073709551615", 0, u64::MAX),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn typed_values() {
        assert_eq!(state("s", b"4"), Ok(XenbusState::Connected));
        assert!(state("s", b"9").is_err());
        assert_eq!(flag("f", b"1"), Ok(true));
        assert!(flag("f", b"2").is_err());
        assert!(
            domid("d", b"32752")
                .unwrap_err()
                .to_string()
                .starts_with("d: ")
        );
        assert_eq!(domid("d", b"32751"), Ok(Domid(32751)));
        assert!(port("e", b"0").is_err());
        assert!(port("e", b"131072").is_err());
        assert_eq!(port("e", b"131071").map(|p| p.0), Ok(131071));
        assert!(grant_ref("r", b"0").is_err());
        assert_eq!(
            abs_path("b", b"/local/domain/0/backend/vif/1/0"),
            Ok("/local/domain/0/backend/vif/1/0")
        );
        for bad in [&b"relative/path"[..], b"/a//b", b"/a/", b"/a b", b"/a\n"] {
            assert!(abs_path("b", bad).is_err(), "{bad:?}");
        }
    }
}
