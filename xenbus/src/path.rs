//! Xenstore path syntax (as `xenstored`'s `is_valid_nodename` checks it).

use crate::error::Errno;
use alloc::format;
use alloc::string::String;
use xen_gnttab::Domid;

/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;
/// `XENSTORE_PAYLOAD_MAX`: the largest request or reply payload (and so the largest value).
pub const PAYLOAD_MAX: usize = 4096;

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'@' | b'-')
}

/// The offset of the first byte that makes `p` invalid, if any.
pub fn first_bad_byte(p: &str) -> Option<usize> {
    let b = p.as_bytes();
    if b.is_empty() {
        return Some(0);
    }
    if let Some(i) = b.iter().position(|&c| !allowed(c)) {
        return Some(i);
    }
    if let Some(i) = p.find("//") {
        return Some(i + 1);
    }
    if b.len() > 1 && b[b.len() - 1] == b'/' {
        return Some(b.len() - 1);
    }
    None
}

/// Checks a path's syntax: an absolute path (`/...`), a path relative to the caller's home
/// (`/local/domain/<id>`), or a special `@name` watch path.
pub fn check(p: &str) -> Result<(), Errno> {
    let max = if p.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if p.len() > max {
        return Err(Errno::Inval);
    }
    match first_bad_byte(p) {
        None => Ok(()),
        Some(_) => Err(Errno::Inval),
    }
}

/// `/local/domain/<domid>`: a domain's home, to which relative paths are relative.
pub fn home(domid: Domid) -> String {
    format!("/local/domain/{}", domid.0)
}

/// `dir/key`.
pub fn join(dir: &str, key: &str) -> String {
    if dir == "/" {
        format!("/{key}")
    } else {
        format!("{dir}/{key}")
    }
}

/// True if `p` is `base` or lies under it.
pub fn is_at_or_under(p: &str, base: &str) -> bool {
    if base == "/" {
        return p.starts_with('/');
    }
    match p.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// The parent of an absolute path (`/` for top-level nodes), or `None` for `/` itself.
pub fn parent(p: &str) -> Option<&str> {
    if p == "/" {
        return None;
    }
    match p.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&p[..i]),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(check("/").is_ok());
        assert!(check("/local/domain/1/device/vif/0").is_ok());
        assert!(check("device/vif/0/state").is_ok());
        assert!(check("@releaseDomain").is_ok());
        assert!(check("").is_err());
        assert!(check("/a//b").is_err());
        assert!(check("/a/").is_err());
        assert!(check("/a.b").is_err());
        assert!(check(&alloc::format!("/{}", "a".repeat(ABS_PATH_MAX))).is_err());
        assert!(is_at_or_under("/a/b", "/a"));
        assert!(is_at_or_under("/a", "/a"));
        assert!(!is_at_or_under("/ab", "/a"));
        assert!(is_at_or_under("/ab", "/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(join("/", "a"), "/a");
    }
}
