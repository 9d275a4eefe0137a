//! Errors: xenstore error codes, parse failures naming the path, handshake failures.

use crate::state::XenbusState;
use alloc::string::String;
use core::time::Duration;
use xen_gnttab::Domid;

/// A xenstore error code, as `xenstored` sends it (the `xsd_errors` table of `xs_wire.h`: an
/// `XS_ERROR` reply carries the name, e.g. `"EAGAIN"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Errno {
    /// `EINVAL`: malformed request or path.
    #[error("EINVAL")]
    Inval,
    /// `EACCES`: permission denied.
    #[error("EACCES")]
    Acces,
    /// `EEXIST`: the node exists.
    #[error("EEXIST")]
    Exist,
    /// `EISDIR`.
    #[error("EISDIR")]
    IsDir,
    /// `ENOENT`: no such node (or transaction).
    #[error("ENOENT")]
    NoEnt,
    /// `ENOMEM`.
    #[error("ENOMEM")]
    NoMem,
    /// `ENOSPC`: a quota (nodes, watches, transactions) is exhausted.
    #[error("ENOSPC")]
    NoSpc,
    /// `EIO`: the connection is gone or the reply was malformed.
    #[error("EIO")]
    Io,
    /// `ENOTEMPTY`.
    #[error("ENOTEMPTY")]
    NotEmpty,
    /// `ENOSYS`: operation not supported.
    #[error("ENOSYS")]
    NoSys,
    /// `EROFS`.
    #[error("EROFS")]
    RoFs,
    /// `EBUSY`.
    #[error("EBUSY")]
    Busy,
    /// `EAGAIN`: the transaction conflicted with another change; retry it.
    #[error("EAGAIN")]
    Again,
    /// `EISCONN`.
    #[error("EISCONN")]
    IsConn,
    /// `E2BIG`: a value, path or reply is larger than allowed.
    #[error("E2BIG")]
    TooBig,
    /// `EPERM`: operation not permitted (e.g. giving a node away).
    #[error("EPERM")]
    Perm,
}

impl Errno {
    const ALL: [Errno; 16] = [
        Errno::Inval,
        Errno::Acces,
        Errno::Exist,
        Errno::IsDir,
        Errno::NoEnt,
        Errno::NoMem,
        Errno::NoSpc,
        Errno::Io,
        Errno::NotEmpty,
        Errno::NoSys,
        Errno::RoFs,
        Errno::Busy,
        Errno::Again,
        Errno::IsConn,
        Errno::TooBig,
        Errno::Perm,
    ];

    /// The name `xenstored` puts in an `XS_ERROR` payload.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Inval => "EINVAL",
            Errno::Acces => "EACCES",
            Errno::Exist => "EEXIST",
            Errno::IsDir => "EISDIR",
            Errno::NoEnt => "ENOENT",
            Errno::NoMem => "ENOMEM",
            Errno::NoSpc => "ENOSPC",
            Errno::Io => "EIO",
            Errno::NotEmpty => "ENOTEMPTY",
            Errno::NoSys => "ENOSYS",
            Errno::RoFs => "EROFS",
            Errno::Busy => "EBUSY",
            Errno::Again => "EAGAIN",
            Errno::IsConn => "EISCONN",
            Errno::TooBig => "E2BIG",
            Errno::Perm => "EPERM",
        }
    }

    /// Decodes an `XS_ERROR` payload (with or without its trailing NUL). Anything unknown is
    /// [`Errno::Io`]: the daemon's reply is untrusted too.
    pub fn from_wire(payload: &[u8]) -> Errno {
        let name = payload.strip_suffix(b"\0").unwrap_or(payload);
        Self::ALL
            .into_iter()
            .find(|e| e.name().as_bytes() == name)
            .unwrap_or(Errno::Io)
    }
}

/// Why an untrusted xenstore value was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The node does not exist.
    #[error("missing")]
    Missing,
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The value is longer than any valid one.
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit for this key.
        max: usize,
    },
    /// A byte that cannot appear in this kind of value.
    #[error("invalid byte {byte:#04x} at offset {at}")]
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// A number does not fit the key's range.
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange {
        /// The value (saturated at `u64::MAX` if it overflowed).
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Not one of the accepted words of an enumerated key.
    #[error("not a known {what}")]
    UnknownValue {
        /// What the key holds (e.g. `"protocol"`).
        what: &'static str,
    },
}

/// An error from the xenstore helpers and parsers: each one names the path it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XenbusError {
    /// A xenstore operation failed.
    #[error("xenstore {op} {path}: {errno}")]
    Store {
        /// The operation (`"read"`, `"write"`, ...).
        op: &'static str,
        /// The path.
        path: String,
        /// The error code.
        errno: Errno,
    },
    /// A value read from xenstore was rejected.
    #[error("{path}: {kind}")]
    Parse {
        /// The path that held it.
        path: String,
        /// Why.
        kind: ParseErrorKind,
    },
    /// A transaction kept conflicting.
    #[error("transaction still conflicting after {attempts} attempts")]
    Conflict {
        /// How many commits were tried.
        attempts: u32,
    },
    /// A driver-level check of a value failed (e.g. a ring reference of 0).
    #[error("{path}: {reason}")]
    Invalid {
        /// The path of the value.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl XenbusError {
    /// The xenstore error code, if this is a store failure.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            XenbusError::Store { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The parse failure, if this is one.
    pub fn parse_kind(&self) -> Option<&ParseErrorKind> {
        match self {
            XenbusError::Parse { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Why a device handshake failed. Every wait is bounded: a silent peer gives
/// [`HandshakeError::Timeout`], a vanished one [`HandshakeError::PeerGone`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A xenstore operation or a peer value failed.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// The peer did not reach the awaited state in time.
    #[error(
        "timed out after {timeout:?} waiting for the peer to {waiting_for} (peer state {peer:?})"
    )]
    Timeout {
        /// What we waited for.
        waiting_for: &'static str,
        /// The peer's last state seen.
        peer: Option<XenbusState>,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The peer's state node disappeared (its domain died or the toolstack removed it).
    #[error("peer domain {peer} is gone: {path} vanished")]
    PeerGone {
        /// The peer's domain.
        peer: Domid,
        /// Its state path.
        path: String,
    },
    /// The peer closed (or started closing) while we were connecting.
    #[error("peer went {state} during the handshake")]
    PeerClosed {
        /// The peer's state.
        state: XenbusState,
    },
    /// The operation is not allowed in the machine's current phase.
    #[error("not allowed in phase {phase}")]
    WrongPhase {
        /// The phase's name.
        phase: &'static str,
    },
}

/// Errors of event-channel operations (the `EINVAL`/`ENOSPC`/`ESRCH` cases of
/// `HYPERVISOR_event_channel_op` and of the `/dev/xen/evtchn` ioctls).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvtchnError {
    /// The port is not one of ours (unbound, out of range, or owned by another handle).
    #[error("invalid port {port}")]
    InvalidPort {
        /// The port.
        port: u32,
    },
    /// The remote port cannot be bound: it is not an unbound port offered to us.
    #[error("port {port} of domain {domid} is not offered to us")]
    NotBindable {
        /// The remote domain.
        domid: Domid,
        /// Its port.
        port: u32,
    },
    /// No such domain.
    #[error("no domain {domid}")]
    NoSuchDomain {
        /// The domain.
        domid: Domid,
    },
    /// The port table is full.
    #[error("no free event-channel port")]
    NoFreePort,
    /// The platform's device or connection failed.
    #[error("event-channel device error: {0}")]
    Platform(&'static str),
    /// A call into the platform's kernel interface failed with an errno that none of the
    /// cases above describes (on Linux: an `ioctl`, `read` or `write` of `/dev/xen/evtchn`).
    #[error("{device} {call}: {name} ({errno})")]
    Os {
        /// The device or interface (`evtchn`).
        device: &'static str,
        /// The call (`BIND_INTERDOMAIN`, `read`).
        call: &'static str,
        /// The OS error number.
        errno: i32,
        /// Its symbolic name (`EINVAL`), or `"errno"` when the platform does not know it.
        name: &'static str,
    },
}
