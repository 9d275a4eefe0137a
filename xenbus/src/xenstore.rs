//! The [`Xenstore`] trait a platform implements, and typed helpers over it.

use crate::error::{Errno, ParseErrorKind, XenbusError};
use crate::parse;
use crate::state::XenbusState;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use xen_gnttab::Domid;

/// A transaction id (`tx_id` of `xsd_sockmsg`); [`Tx::NONE`] is outside any transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tx(pub u32);

impl Tx {
    /// No transaction: the operation applies at once.
    pub const NONE: Tx = Tx(0);
}

/// One permission a domain has on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Perm {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Perm {
    /// The character used on the wire.
    pub const fn as_char(self) -> u8 {
        match self {
            Perm::None => b'n',
            Perm::Read => b'r',
            Perm::Write => b'w',
            Perm::Both => b'b',
        }
    }
    /// The permission for a wire character.
    pub fn from_char(c: u8) -> Option<Perm> {
        Some(match c {
            b'n' => Perm::None,
            b'r' => Perm::Read,
            b'w' => Perm::Write,
            b'b' => Perm::Both,
            _ => return None,
        })
    }
    /// Includes read access.
    pub const fn can_read(self) -> bool {
        matches!(self, Perm::Read | Perm::Both)
    }
    /// Includes write access.
    pub const fn can_write(self) -> bool {
        matches!(self, Perm::Write | Perm::Both)
    }
}

/// A node's permissions: its owner (full access), what other domains get, and per-domain
/// exceptions. Domain 0 is privileged and always has full access.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// The owner; nodes count against the owner's quota.
    pub owner: Domid,
    /// Access of domains not listed in `acl`.
    pub others: Perm,
    /// Per-domain access.
    pub acl: Vec<(Domid, Perm)>,
}

/// Most entries a permission list may have (bounds what a peer's reply can make us allocate).
pub const MAX_ACL: usize = 64;

impl Perms {
    /// Owned by `owner`, no access for anyone else.
    pub fn private(owner: Domid) -> Self {
        Perms {
            owner,
            others: Perm::None,
            acl: Vec::new(),
        }
    }

    /// Owned by `owner`, readable by `reader`, nobody else.
    pub fn shared_read(owner: Domid, reader: Domid) -> Self {
        Perms {
            owner,
            others: Perm::None,
            acl: alloc::vec![(reader, Perm::Read)],
        }
    }

    /// What `domid` may do (ignoring domain 0's privilege).
    pub fn access(&self, domid: Domid) -> Perm {
        if domid == self.owner {
            return Perm::Both;
        }
        self.acl
            .iter()
            .find(|(d, _)| *d == domid)
            .map(|&(_, p)| p)
            .unwrap_or(self.others)
    }

    /// The `XS_SET_PERMS`/`XS_GET_PERMS` payload: `<perm><domid>\0` per entry, owner first.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |p: Perm, d: Domid| {
            out.push(p.as_char());
            out.extend_from_slice(alloc::format!("{}", d.0).as_bytes());
            out.push(0);
        };
        push(self.others, self.owner);
        for &(d, p) in &self.acl {
            push(p, d);
        }
        out
    }

    /// Parses an untrusted `XS_GET_PERMS` reply.
    pub fn from_wire(path: &str, payload: &[u8]) -> Result<Perms, XenbusError> {
        let bad = |kind| XenbusError::Parse {
            path: String::from(path),
            kind,
        };
        let body = payload.strip_suffix(b"\0").unwrap_or(payload);
        let mut entries = body.split(|&b| b == 0);
        let mut entry = |first: bool| -> Result<Option<(Domid, Perm)>, XenbusError> {
            let Some(e) = entries.next() else {
                return if first {
                    Err(bad(ParseErrorKind::Empty))
                } else {
                    Ok(None)
                };
            };
            let (&c, id) = e.split_first().ok_or(bad(ParseErrorKind::Empty))?;
            let p =
                Perm::from_char(c).ok_or(bad(ParseErrorKind::InvalidByte { byte: c, at: 0 }))?;
            Ok(Some((parse::domid(path, id)?, p)))
        };
        let (owner, others) = entry(true)?.ok_or(bad(ParseErrorKind::Empty))?;
        let mut acl = Vec::new();
        while let Some(e) = entry(false)? {
            if acl.len() == MAX_ACL {
                return Err(bad(ParseErrorKind::TooLong {
                    len: payload.len(),
                    max: MAX_ACL,
                }));
            }
            acl.push(e);
        }
        Ok(Perms { owner, others, acl })
    }
}

/// A watch firing: the path that changed (or the watched path, for the initial event) and
/// the token given to [`Xenstore::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path.
    pub path: String,
    /// The token.
    pub token: String,
}

/// A connection to xenstore, as one driver sees it.
///
/// Paths are absolute (`/local/domain/1/device/vif/0`) or relative to the caller's home
/// `/local/domain/<domid>`. Values are bytes and untrusted: parse them with [`XenstoreExt`]'s
/// typed readers. Every method returns at once except [`wait_watch`](Self::wait_watch), which
/// blocks at most for its timeout; the platform provides the clock ([`now`](Self::now)).
///
/// Watch events of a connection come out of one queue, whatever their token. A driver that
/// waits on watches should own its connection (cheap on every platform: another open of
/// `/dev/xen/xenbus`, another simulated connection, a token-demultiplexed queue on a
/// unikernel).
pub trait Xenstore {
    /// The domain this connection belongs to.
    fn domid(&self) -> Domid;
    /// A monotonic clock (any epoch) for deadlines across several waits.
    fn now(&self) -> Duration;
    /// `XS_READ`.
    fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, Errno>;
    /// `XS_WRITE`: creates the node (and missing parents) if needed.
    fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), Errno>;
    /// `XS_MKDIR`: creates an empty node if it does not exist.
    fn mkdir(&self, tx: Tx, path: &str) -> Result<(), Errno>;
    /// `XS_RM`: removes a node and everything under it.
    fn rm(&self, tx: Tx, path: &str) -> Result<(), Errno>;
    /// `XS_DIRECTORY`: the names of a node's children.
    fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, Errno>;
    /// `XS_GET_PERMS`.
    fn get_perms(&self, tx: Tx, path: &str) -> Result<Perms, Errno>;
    /// `XS_SET_PERMS`: only the owner (or domain 0) may, and only domain 0 may change owner.
    fn set_perms(&self, tx: Tx, path: &str, perms: &Perms) -> Result<(), Errno>;
    /// `XS_TRANSACTION_START`: operations with the returned id see a private view until
    /// [`transaction_end`](Self::transaction_end).
    fn transaction_start(&self) -> Result<Tx, Errno>;
    /// `XS_TRANSACTION_END`: commits (or aborts) the transaction. A commit that conflicts
    /// with a change made since the transaction read or wrote a node fails with
    /// [`Errno::Again`]: start over (see [`transact`]).
    fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), Errno>;
    /// `XS_WATCH`: fires once now, then on every change at or under `path`.
    fn watch(&self, path: &str, token: &str) -> Result<(), Errno>;
    /// `XS_UNWATCH`.
    fn unwatch(&self, path: &str, token: &str) -> Result<(), Errno>;
    /// The next queued watch event, without blocking.
    fn poll_watch(&self) -> Result<Option<WatchEvent>, Errno>;
    /// The next watch event, waiting at most `timeout`; `Ok(None)` when it expires.
    fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, Errno>;
}

impl<X: Xenstore + ?Sized> Xenstore for &X {
    fn domid(&self) -> Domid {
        (**self).domid()
    }
    fn now(&self) -> Duration {
        (**self).now()
    }
    fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, Errno> {
        (**self).read(tx, path)
    }
    fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), Errno> {
        (**self).write(tx, path, value)
    }
    fn mkdir(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        (**self).mkdir(tx, path)
    }
    fn rm(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        (**self).rm(tx, path)
    }
    fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, Errno> {
        (**self).directory(tx, path)
    }
    fn get_perms(&self, tx: Tx, path: &str) -> Result<Perms, Errno> {
        (**self).get_perms(tx, path)
    }
    fn set_perms(&self, tx: Tx, path: &str, perms: &Perms) -> Result<(), Errno> {
        (**self).set_perms(tx, path, perms)
    }
    fn transaction_start(&self) -> Result<Tx, Errno> {
        (**self).transaction_start()
    }
    fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), Errno> {
        (**self).transaction_end(tx, commit)
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), Errno> {
        (**self).watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), Errno> {
        (**self).unwatch(path, token)
    }
    fn poll_watch(&self) -> Result<Option<WatchEvent>, Errno> {
        (**self).poll_watch()
    }
    fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, Errno> {
        (**self).wait_watch(timeout)
    }
}

fn store_err<'p>(op: &'static str, path: &'p str) -> impl FnOnce(Errno) -> XenbusError + 'p {
    move |errno| XenbusError::Store {
        op,
        path: String::from(path),
        errno,
    }
}

/// Typed, path-naming helpers over any [`Xenstore`].
pub trait XenstoreExt: Xenstore {
    /// Reads a value; a missing node is [`ParseErrorKind::Missing`], other failures
    /// [`XenbusError::Store`].
    fn read_value(&self, tx: Tx, path: &str) -> Result<Vec<u8>, XenbusError> {
        self.read(tx, path).map_err(|e| match e {
            Errno::NoEnt => XenbusError::Parse {
                path: String::from(path),
                kind: ParseErrorKind::Missing,
            },
            errno => store_err("read", path)(errno),
        })
    }
    /// Reads a value if the node exists.
    fn read_optional(&self, tx: Tx, path: &str) -> Result<Option<Vec<u8>>, XenbusError> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(Errno::NoEnt) => Ok(None),
            Err(e) => Err(store_err("read", path)(e)),
        }
    }
    /// Reads a decimal integer in `min..=max`.
    fn read_uint(&self, tx: Tx, path: &str, min: u64, max: u64) -> Result<u64, XenbusError> {
        parse::uint(path, &self.read_value(tx, path)?, min, max)
    }
    /// Reads a `u32`.
    fn read_u32(&self, tx: Tx, path: &str) -> Result<u32, XenbusError> {
        parse::u32_value(path, &self.read_value(tx, path)?)
    }
    /// Reads a `XenbusState`.
    fn read_state(&self, tx: Tx, path: &str) -> Result<XenbusState, XenbusError> {
        parse::state(path, &self.read_value(tx, path)?)
    }
    /// Reads a feature flag; a missing node is `default`.
    fn read_flag(&self, tx: Tx, path: &str, default: bool) -> Result<bool, XenbusError> {
        match self.read_optional(tx, path)? {
            None => Ok(default),
            Some(v) => parse::flag(path, &v),
        }
    }
    /// Reads a domain id.
    fn read_domid(&self, tx: Tx, path: &str) -> Result<Domid, XenbusError> {
        parse::domid(path, &self.read_value(tx, path)?)
    }
    /// Reads a peer's event-channel port.
    fn read_port(&self, tx: Tx, path: &str) -> Result<crate::evtchn::Port, XenbusError> {
        parse::port(path, &self.read_value(tx, path)?)
    }
    /// Reads a peer's grant reference.
    fn read_grant_ref(&self, tx: Tx, path: &str) -> Result<xen_gnttab::GrantRef, XenbusError> {
        parse::grant_ref(path, &self.read_value(tx, path)?)
    }
    /// Reads an absolute path stored in a node (e.g. `backend`).
    fn read_abs_path(&self, tx: Tx, path: &str) -> Result<String, XenbusError> {
        parse::abs_path(path, &self.read_value(tx, path)?).map(String::from)
    }
    /// Reads an enumerated value.
    fn read_enum<E: parse::XsEnum>(&self, tx: Tx, path: &str) -> Result<E, XenbusError> {
        parse::enumerated(path, &self.read_value(tx, path)?)
    }
    /// Writes a string value.
    fn write_str(&self, tx: Tx, path: &str, value: &str) -> Result<(), XenbusError> {
        self.write(tx, path, value.as_bytes())
            .map_err(store_err("write", path))
    }
    /// Writes a decimal number.
    fn write_uint(&self, tx: Tx, path: &str, value: u64) -> Result<(), XenbusError> {
        self.write_str(tx, path, &alloc::format!("{value}"))
    }
    /// Writes a `XenbusState`.
    fn write_state(&self, tx: Tx, path: &str, state: XenbusState) -> Result<(), XenbusError> {
        self.write_str(tx, path, state.as_str())
    }
}

impl<X: Xenstore + ?Sized> XenstoreExt for X {}

/// Commit attempts [`transact`] makes by default before giving up with
/// [`XenbusError::Conflict`].
pub const DEFAULT_TX_ATTEMPTS: u32 = 16;

/// Runs `body` in a transaction and commits it, starting over while the commit fails with
/// `EAGAIN`, at most `attempts` times. If `body` fails, the transaction is aborted and its
/// error returned. `body` may run several times: it must only talk to xenstore through `tx`.
pub fn transact<X, T, E>(
    xs: &X,
    attempts: u32,
    mut body: impl FnMut(Tx) -> Result<T, E>,
) -> Result<T, E>
where
    X: Xenstore + ?Sized,
    E: From<XenbusError>,
{
    for _ in 0..attempts {
        let tx = xs
            .transaction_start()
            .map_err(store_err("transaction_start", ""))?;
        let value = match body(tx) {
            Ok(v) => v,
            Err(e) => {
                // Aborting cannot make things worse; its own failure is not the news.
                let _ = xs.transaction_end(tx, false);
                return Err(e);
            }
        };
        match xs.transaction_end(tx, true) {
            Ok(()) => return Ok(value),
            Err(Errno::Again) => continue,
            Err(e) => return Err(store_err("transaction_end", "")(e).into()),
        }
    }
    Err(XenbusError::Conflict { attempts }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_wire_round_trip_and_hostile_replies() {
        let p = Perms {
            owner: Domid(3),
            others: Perm::Read,
            acl: alloc::vec![(Domid(0), Perm::Both), (Domid(7), Perm::None)],
        };
        assert_eq!(p.to_wire(), b"r3\0b0\0n7\0");
        assert_eq!(Perms::from_wire("/x", &p.to_wire()), Ok(p.clone()));
        assert_eq!(p.access(Domid(3)), Perm::Both);
        assert_eq!(p.access(Domid(7)), Perm::None);
        assert_eq!(p.access(Domid(9)), Perm::Read);
        for bad in [&b""[..], b"\0", b"x1\0", b"r\0", b"r99999\0", b"r1\0q2\0"] {
            let e = Perms::from_wire("/x", bad).unwrap_err();
            assert!(
                matches!(e, XenbusError::Parse { ref path, .. } if path == "/x"),
                "{bad:?}"
            );
        }
        let mut long = Vec::new();
        for _ in 0..=MAX_ACL + 1 {
            long.extend_from_slice(b"r1\0");
        }
        assert!(Perms::from_wire("/x", &long).is_err(), "bounded list");
    }
}
