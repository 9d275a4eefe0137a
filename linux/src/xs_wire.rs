//! The xenstore wire protocol (`xen/io/xs_wire.h`): a pure codec, no I/O.
//!
//! A message is a 16-byte [`XsdSockmsg`] header followed by `len` payload bytes, at most
//! [`PAYLOAD_MAX`]. Requests are built by [`Request::encode`]; bytes read from the device go
//! into a [`Decoder`], which yields whole [`Message`]s; [`parse_reply`] and
//! [`parse_watch_event`] turn a message into a typed answer.
//!
//! Everything here treats its input as hostile: lengths are bounded before anything is
//! buffered, strings must be terminated and UTF-8 where the protocol says they are strings,
//! and every violation is a [`CodecError`], never a panic.

use std::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XENSTORE_PAYLOAD_MAX`: the largest payload of one message.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: the longest relative path.
pub const REL_PATH_MAX: usize = 2048;
/// Size of the header.
pub const HEADER_LEN: usize = size_of::<XsdSockmsg>();

/// `struct xsd_sockmsg`, the message header.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XsdSockmsg {
    /// `XS_*` ([`XsType`]).
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

static_assertions::const_assert_eq!(HEADER_LEN, 16);

/// `enum xsd_sockmsg_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum XsType {
    /// `XS_CONTROL` (also `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`.
    WatchEvent = 15,
    /// `XS_ERROR`.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20 was `XS_RESTRICT`, removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
}

impl XsType {
    /// Every type, in order of value.
    pub const ALL: [XsType; 22] = [
        XsType::Control,
        XsType::Directory,
        XsType::Read,
        XsType::GetPerms,
        XsType::Watch,
        XsType::Unwatch,
        XsType::TransactionStart,
        XsType::TransactionEnd,
        XsType::Introduce,
        XsType::Release,
        XsType::GetDomainPath,
        XsType::Write,
        XsType::Mkdir,
        XsType::Rm,
        XsType::SetPerms,
        XsType::WatchEvent,
        XsType::Error,
        XsType::IsDomainIntroduced,
        XsType::Resume,
        XsType::SetTarget,
        XsType::ResetWatches,
        XsType::DirectoryPart,
    ];
    /// `XS_TYPE_COUNT`: one past the largest valid type.
    pub const COUNT: u32 = 23;
    /// `XS_INVALID`: guaranteed never to be a valid type.
    pub const INVALID: u32 = 0xffff;

    /// The type with wire value `v`.
    pub fn from_u32(v: u32) -> Option<XsType> {
        XsType::ALL.into_iter().find(|t| *t as u32 == v)
    }

    /// The C name (`XS_READ`), for error messages.
    pub fn name(self) -> &'static str {
        match self {
            XsType::Control => "XS_CONTROL",
            XsType::Directory => "XS_DIRECTORY",
            XsType::Read => "XS_READ",
            XsType::GetPerms => "XS_GET_PERMS",
            XsType::Watch => "XS_WATCH",
            XsType::Unwatch => "XS_UNWATCH",
            XsType::TransactionStart => "XS_TRANSACTION_START",
            XsType::TransactionEnd => "XS_TRANSACTION_END",
            XsType::Introduce => "XS_INTRODUCE",
            XsType::Release => "XS_RELEASE",
            XsType::GetDomainPath => "XS_GET_DOMAIN_PATH",
            XsType::Write => "XS_WRITE",
            XsType::Mkdir => "XS_MKDIR",
            XsType::Rm => "XS_RM",
            XsType::SetPerms => "XS_SET_PERMS",
            XsType::WatchEvent => "XS_WATCH_EVENT",
            XsType::Error => "XS_ERROR",
            XsType::IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED",
            XsType::Resume => "XS_RESUME",
            XsType::SetTarget => "XS_SET_TARGET",
            XsType::ResetWatches => "XS_RESET_WATCHES",
            XsType::DirectoryPart => "XS_DIRECTORY_PART",
        }
    }
}

/// The errors xenstore sends as strings (`xsd_errors[]`, in the header's order).
#[allow(clippy::upper_case_acronyms)] // The names are the wire strings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XsErrno {
    /// `EINVAL`.
    EINVAL,
    /// `EACCES`.
    EACCES,
    /// `EEXIST`.
    EEXIST,
    /// `EISDIR`.
    EISDIR,
    /// `ENOENT`.
    ENOENT,
    /// `ENOMEM`.
    ENOMEM,
    /// `ENOSPC`.
    ENOSPC,
    /// `EIO`.
    EIO,
    /// `ENOTEMPTY`.
    ENOTEMPTY,
    /// `ENOSYS`.
    ENOSYS,
    /// `EROFS`.
    EROFS,
    /// `EBUSY`.
    EBUSY,
    /// `EAGAIN`: a transaction conflicted and must be retried.
    EAGAIN,
    /// `EISCONN`.
    EISCONN,
    /// `E2BIG`.
    E2BIG,
    /// `EPERM`.
    EPERM,
}

impl XsErrno {
    /// Every error, in the order of `xsd_errors[]`.
    pub const ALL: [XsErrno; 16] = [
        XsErrno::EINVAL,
        XsErrno::EACCES,
        XsErrno::EEXIST,
        XsErrno::EISDIR,
        XsErrno::ENOENT,
        XsErrno::ENOMEM,
        XsErrno::ENOSPC,
        XsErrno::EIO,
        XsErrno::ENOTEMPTY,
        XsErrno::ENOSYS,
        XsErrno::EROFS,
        XsErrno::EBUSY,
        XsErrno::EAGAIN,
        XsErrno::EISCONN,
        XsErrno::E2BIG,
        XsErrno::EPERM,
    ];

    /// The wire string.
    pub fn name(self) -> &'static str {
        match self {
            XsErrno::EINVAL => "EINVAL",
            XsErrno::EACCES => "EACCES",
            XsErrno::EEXIST => "EEXIST",
            XsErrno::EISDIR => "EISDIR",
            XsErrno::ENOENT => "ENOENT",
            XsErrno::ENOMEM => "ENOMEM",
            XsErrno::ENOSPC => "ENOSPC",
            XsErrno::EIO => "EIO",
            XsErrno::ENOTEMPTY => "ENOTEMPTY",
            XsErrno::ENOSYS => "ENOSYS",
            XsErrno::EROFS => "EROFS",
            XsErrno::EBUSY => "EBUSY",
            XsErrno::EAGAIN => "EAGAIN",
            XsErrno::EISCONN => "EISCONN",
            XsErrno::E2BIG => "E2BIG",
            XsErrno::EPERM => "EPERM",
        }
    }

    /// The Linux errno value (`xsd_errors[i].errnum`).
    pub fn errnum(self) -> i32 {
        match self {
            XsErrno::EINVAL => libc::EINVAL,
            XsErrno::EACCES => libc::EACCES,
            XsErrno::EEXIST => libc::EEXIST,
            XsErrno::EISDIR => libc::EISDIR,
            XsErrno::ENOENT => libc::ENOENT,
            XsErrno::ENOMEM => libc::ENOMEM,
            XsErrno::ENOSPC => libc::ENOSPC,
            XsErrno::EIO => libc::EIO,
            XsErrno::ENOTEMPTY => libc::ENOTEMPTY,
            XsErrno::ENOSYS => libc::ENOSYS,
            XsErrno::EROFS => libc::EROFS,
            XsErrno::EBUSY => libc::EBUSY,
            XsErrno::EAGAIN => libc::EAGAIN,
            XsErrno::EISCONN => libc::EISCONN,
            XsErrno::E2BIG => libc::E2BIG,
            XsErrno::EPERM => libc::EPERM,
        }
    }

    /// The error named `s`.
    pub fn from_name(s: &[u8]) -> Option<XsErrno> {
        XsErrno::ALL.into_iter().find(|e| e.name().as_bytes() == s)
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A violation of the wire protocol, by us (a request that cannot be sent) or by the peer.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CodecError {
    /// A payload longer than [`PAYLOAD_MAX`].
    #[error("payload of {len} bytes exceeds XENSTORE_PAYLOAD_MAX ({PAYLOAD_MAX})")]
    PayloadTooLong {
        /// The length given.
        len: u64,
    },
    /// A path that is empty or contains a NUL byte.
    #[error("path is empty or contains NUL")]
    BadPath,
    /// A path longer than xenstore accepts.
    #[error("path of {len} bytes exceeds the limit of {max}")]
    PathTooLong {
        /// Its length.
        len: usize,
        /// The limit ([`ABS_PATH_MAX`] or [`REL_PATH_MAX`]).
        max: usize,
    },
    /// A watch token containing a NUL byte.
    #[error("watch token contains NUL")]
    BadToken,
    /// A reply whose type is neither the request's nor `XS_ERROR`.
    #[error("reply of type {got} to a request of type {expected}")]
    UnexpectedType {
        /// The request's type.
        expected: u32,
        /// The reply's.
        got: u32,
    },
    /// A reply whose request id is not the one outstanding.
    #[error("reply to request id {got}, expected {expected}")]
    UnexpectedReqId {
        /// The outstanding id.
        expected: u32,
        /// The reply's.
        got: u32,
    },
    /// A string field not terminated by NUL.
    #[error("string not NUL-terminated")]
    Unterminated,
    /// A string field that is not UTF-8 (paths, names, tokens are text).
    #[error("string is not UTF-8")]
    NotUtf8,
    /// An acknowledgement other than `OK`.
    #[error("acknowledgement is not OK")]
    NotOk,
    /// A transaction id that is not a decimal number in range, or 0.
    #[error("bad transaction id")]
    BadTxId,
    /// An error string not in `xsd_errors[]`.
    #[error("unknown xenstore error string")]
    UnknownError,
    /// A directory listing with an empty name.
    #[error("empty name in directory listing")]
    EmptyEntry,
    /// A domain id that is not a decimal number below `DOMID_FIRST_RESERVED`.
    #[error("bad domain id")]
    BadDomid,
    /// A watch event that is not `path\0token\0`.
    #[error("malformed watch event")]
    BadWatchEvent,
    /// A permission list that is not `<r|w|b|n><domid>\0`...
    #[error("malformed permission list")]
    BadPerms,
}

/// A request, borrowing its strings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request<'a> {
    /// `XS_READ path`.
    Read {
        /// The node.
        path: &'a str,
    },
    /// `XS_WRITE path value`.
    Write {
        /// The node.
        path: &'a str,
        /// Its new value (any bytes).
        value: &'a [u8],
    },
    /// `XS_MKDIR path`.
    Mkdir {
        /// The node.
        path: &'a str,
    },
    /// `XS_RM path`.
    Rm {
        /// The node.
        path: &'a str,
    },
    /// `XS_DIRECTORY path`.
    Directory {
        /// The node.
        path: &'a str,
    },
    /// `XS_WATCH path token`.
    Watch {
        /// The node watched (and everything below it).
        path: &'a str,
        /// Echoed in each event.
        token: &'a str,
    },
    /// `XS_UNWATCH path token`.
    Unwatch {
        /// As given to the watch.
        path: &'a str,
        /// As given to the watch.
        token: &'a str,
    },
    /// `XS_TRANSACTION_START`.
    TransactionStart,
    /// `XS_TRANSACTION_END T|F`.
    TransactionEnd {
        /// Commit (`T`) or abort (`F`).
        commit: bool,
    },
    /// `XS_GET_DOMAIN_PATH domid`.
    GetDomainPath {
        /// The domain.
        domid: u16,
    },
    /// `XS_GET_PERMS path`.
    GetPerms {
        /// The node.
        path: &'a str,
    },
    /// `XS_SET_PERMS path perms`.
    SetPerms {
        /// The node.
        path: &'a str,
        /// The permission list in its wire form: one `<r|w|b|n><domid>\0` entry each, owner
        /// first (`xen_xenbus::Perms::to_wire`). Checked by [`check_perms`] before sending.
        perms: &'a [u8],
    },
}

/// Checks an `XS_SET_PERMS` list: at least one entry, each a permission letter, a decimal
/// domain id and a NUL.
pub fn check_perms(perms: &[u8]) -> Result<(), CodecError> {
    let body = perms.strip_suffix(b"\0").ok_or(CodecError::BadPerms)?;
    for entry in body.split(|b| *b == 0) {
        let ok = matches!(entry.first(), Some(b'r' | b'w' | b'b' | b'n'))
            && (2..=6).contains(&entry.len())
            && entry[1..].iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(CodecError::BadPerms);
        }
    }
    Ok(())
}

/// Checks a path for xenstore's rules.
fn check_path(path: &str) -> Result<(), CodecError> {
    if path.is_empty() || path.contains('\0') {
        return Err(CodecError::BadPath);
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return Err(CodecError::PathTooLong {
            len: path.len(),
            max,
        });
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), CodecError> {
    if token.contains('\0') {
        Err(CodecError::BadToken)
    } else {
        Ok(())
    }
}

impl Request<'_> {
    /// Its message type.
    pub fn msg_type(&self) -> XsType {
        match self {
            Request::Read { .. } => XsType::Read,
            Request::Write { .. } => XsType::Write,
            Request::Mkdir { .. } => XsType::Mkdir,
            Request::Rm { .. } => XsType::Rm,
            Request::Directory { .. } => XsType::Directory,
            Request::Watch { .. } => XsType::Watch,
            Request::Unwatch { .. } => XsType::Unwatch,
            Request::TransactionStart => XsType::TransactionStart,
            Request::TransactionEnd { .. } => XsType::TransactionEnd,
            Request::GetDomainPath { .. } => XsType::GetDomainPath,
            Request::GetPerms { .. } => XsType::GetPerms,
            Request::SetPerms { .. } => XsType::SetPerms,
        }
    }

    /// The whole message (header and payload), or why it cannot be sent.
    pub fn encode(&self, req_id: u32, tx_id: u32) -> Result<Vec<u8>, CodecError> {
        let mut payload = Vec::new();
        let mut string = |s: &[u8]| {
            payload.extend_from_slice(s);
            payload.push(0);
        };
        match *self {
            Request::Read { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path }
            | Request::GetPerms { path } => {
                check_path(path)?;
                string(path.as_bytes());
            }
            Request::Write { path, value } => {
                check_path(path)?;
                string(path.as_bytes());
                payload.extend_from_slice(value);
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                check_path(path)?;
                check_token(token)?;
                string(path.as_bytes());
                string(token.as_bytes());
            }
            // Xenstore expects an empty string argument.
            Request::TransactionStart => string(b""),
            Request::TransactionEnd { commit } => string(if commit { b"T" } else { b"F" }),
            Request::GetDomainPath { domid } => string(domid.to_string().as_bytes()),
            Request::SetPerms { path, perms } => {
                check_path(path)?;
                check_perms(perms)?;
                string(path.as_bytes());
                payload.extend_from_slice(perms);
            }
        }
        if payload.len() > PAYLOAD_MAX {
            return Err(CodecError::PayloadTooLong {
                len: payload.len() as u64,
            });
        }
        let hdr = XsdSockmsg {
            type_: self.msg_type() as u32,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        let mut msg = hdr.as_bytes().to_vec();
        msg.extend_from_slice(&payload);
        Ok(msg)
    }
}

/// One whole message read from xenstore.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The header (`len` equals `payload.len()`).
    pub header: XsdSockmsg,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Reassembles messages from a byte stream. Holds at most one partial message (header plus
/// [`PAYLOAD_MAX`]) beyond the bytes of the last push.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` if more bytes are needed. An over-long length is an
    /// error: the stream cannot be resynchronised after it.
    pub fn next_message(&mut self) -> Result<Option<Message>, CodecError> {
        let Ok((header, _)) = XsdSockmsg::read_from_prefix(&self.buf) else {
            return Ok(None);
        };
        let len = header.len as usize;
        if len > PAYLOAD_MAX {
            return Err(CodecError::PayloadTooLong {
                len: header.len.into(),
            });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(Message { header, payload }))
    }
}

/// A successful answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reply {
    /// `OK` (write, mkdir, rm, watch, unwatch, transaction end).
    Ok,
    /// A node's value (read).
    Value(Vec<u8>),
    /// Child names (directory).
    Entries(Vec<String>),
    /// A new transaction's id.
    TxId(u32),
    /// A path (get domain path).
    Path(String),
    /// A permission list in its wire form (get perms), checked by [`check_perms`]; parse it
    /// with `xen_xenbus::Perms::from_wire`.
    Perms(Vec<u8>),
}

/// The string `s` up to a final NUL, which must be there.
fn terminated(s: &[u8]) -> Result<&[u8], CodecError> {
    match s.split_last() {
        Some((0, body)) => Ok(body),
        _ => Err(CodecError::Unterminated),
    }
}

fn text(s: &[u8]) -> Result<String, CodecError> {
    std::str::from_utf8(s)
        .map(str::to_owned)
        .map_err(|_| CodecError::NotUtf8)
}

/// Interprets `msg` as the answer to a request of type `req` with id `req_id`.
///
/// `Ok(Err(e))` is xenstore's error `e`; `Err` is a protocol violation.
pub fn parse_reply(
    req: XsType,
    req_id: u32,
    msg: &Message,
) -> Result<Result<Reply, XsErrno>, CodecError> {
    if msg.header.req_id != req_id {
        return Err(CodecError::UnexpectedReqId {
            expected: req_id,
            got: msg.header.req_id,
        });
    }
    let p = msg.payload.as_slice();
    if msg.header.type_ == XsType::Error as u32 {
        // "EAGAIN\0"; tolerate a missing terminator, nothing else.
        let name = terminated(p).unwrap_or(p);
        return XsErrno::from_name(name)
            .map(Err)
            .ok_or(CodecError::UnknownError);
    }
    if msg.header.type_ != req as u32 {
        return Err(CodecError::UnexpectedType {
            expected: req as u32,
            got: msg.header.type_,
        });
    }
    let reply = match req {
        XsType::Read => Reply::Value(p.to_vec()),
        XsType::Directory => {
            let mut entries = Vec::new();
            if !p.is_empty() {
                for name in terminated(p)?.split(|b| *b == 0) {
                    if name.is_empty() {
                        return Err(CodecError::EmptyEntry);
                    }
                    entries.push(text(name)?);
                }
            }
            Reply::Entries(entries)
        }
        XsType::TransactionStart => {
            let digits = terminated(p)?;
            let id = std::str::from_utf8(digits)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|id| *id != 0)
                .ok_or(CodecError::BadTxId)?;
            Reply::TxId(id)
        }
        XsType::GetDomainPath => Reply::Path(text(terminated(p)?)?),
        XsType::GetPerms => {
            check_perms(p)?;
            Reply::Perms(p.to_vec())
        }
        _ => {
            if p == b"OK\0" || p == b"OK" {
                Reply::Ok
            } else {
                return Err(CodecError::NotOk);
            }
        }
    };
    Ok(Ok(reply))
}

/// A fired watch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WatchEvent {
    /// The node that changed (or the watched path itself, for the initial event).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// Interprets an `XS_WATCH_EVENT` payload: `path\0token\0`.
pub fn parse_watch_event(msg: &Message) -> Result<WatchEvent, CodecError> {
    if msg.header.type_ != XsType::WatchEvent as u32 {
        return Err(CodecError::UnexpectedType {
            expected: XsType::WatchEvent as u32,
            got: msg.header.type_,
        });
    }
    let body = terminated(&msg.payload).map_err(|_| CodecError::BadWatchEvent)?;
    let mut parts = body.split(|b| *b == 0);
    let (Some(path), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CodecError::BadWatchEvent);
    };
    if path.is_empty() {
        return Err(CodecError::BadWatchEvent);
    }
    Ok(WatchEvent {
        path: text(path)?,
        token: text(token)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u32, req_id: u32, payload: &[u8]) -> Message {
        Message {
            header: XsdSockmsg {
                type_: ty,
                req_id,
                tx_id: 0,
                len: payload.len() as u32,
            },
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn requests_encode_as_header_and_nul_terminated_strings() {
        let m = Request::Write {
            path: "/a/b",
            value: b"v\0x",
        }
        .encode(7, 3)
        .unwrap();
        assert_eq!(&m[..16], [11, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(&m[16..], b"/a/b\0v\0x");
        let m = Request::Watch {
            path: "p",
            token: "t",
        }
        .encode(1, 0)
        .unwrap();
        assert_eq!(&m[16..], b"p\0t\0");
        assert_eq!(m[0], 4);
        let m = Request::TransactionStart.encode(2, 0).unwrap();
        assert_eq!((m[0], &m[16..]), (6, &b"\0"[..]));
        let m = Request::TransactionEnd { commit: false }
            .encode(2, 9)
            .unwrap();
        assert_eq!((m[0], m[8], &m[16..]), (7, 9, &b"F\0"[..]));
        let m = Request::GetDomainPath { domid: 12 }.encode(2, 0).unwrap();
        assert_eq!(&m[16..], b"12\0");
        let m = Request::GetPerms { path: "/p" }.encode(3, 0).unwrap();
        assert_eq!((m[0], &m[16..]), (3, &b"/p\0"[..]));
        let m = Request::SetPerms {
            path: "/p",
            perms: b"n3\0r0\0",
        }
        .encode(4, 5)
        .unwrap();
        assert_eq!((m[0], m[8], &m[16..]), (14, 5, &b"/p\0n3\0r0\0"[..]));
    }

    #[test]
    fn permission_lists_are_checked_both_ways() {
        for good in [&b"n0\0"[..], b"b32767\0", b"r1\0w2\0n3\0"] {
            assert_eq!(check_perms(good), Ok(()), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"\0",
            b"n0",
            b"x0\0",
            b"r\0",
            b"r1a\0",
            b"r1\0\0",
            b"r1234567\0",
        ] {
            assert_eq!(check_perms(bad), Err(CodecError::BadPerms), "{bad:?}");
            assert_eq!(
                Request::SetPerms {
                    path: "/p",
                    perms: bad
                }
                .encode(1, 0),
                Err(CodecError::BadPerms)
            );
            assert_eq!(
                parse_reply(XsType::GetPerms, 1, &msg(3, 1, bad)),
                Err(CodecError::BadPerms)
            );
        }
        assert_eq!(
            parse_reply(XsType::GetPerms, 1, &msg(3, 1, b"n1\0r0\0")),
            Ok(Ok(Reply::Perms(b"n1\0r0\0".to_vec())))
        );
    }

    #[test]
    fn bad_requests_are_refused_before_sending() {
        assert_eq!(
            Request::Read { path: "" }.encode(1, 0),
            Err(CodecError::BadPath)
        );
        assert_eq!(
            Request::Rm { path: "a\0b" }.encode(1, 0),
            Err(CodecError::BadPath)
        );
        let long = format!("/{}", "x".repeat(ABS_PATH_MAX));
        assert_eq!(
            Request::Read { path: &long }.encode(1, 0),
            Err(CodecError::PathTooLong {
                len: ABS_PATH_MAX + 1,
                max: ABS_PATH_MAX
            })
        );
        let rel = "x".repeat(REL_PATH_MAX + 1);
        assert!(matches!(
            Request::Read { path: &rel }.encode(1, 0),
            Err(CodecError::PathTooLong {
                max: REL_PATH_MAX,
                ..
            })
        ));
        let value = vec![0u8; PAYLOAD_MAX];
        assert_eq!(
            Request::Write {
                path: "/a",
                value: &value
            }
            .encode(1, 0),
            Err(CodecError::PayloadTooLong {
                len: (PAYLOAD_MAX + 3) as u64
            })
        );
        assert_eq!(
            Request::Watch {
                path: "/a",
                token: "t\0"
            }
            .encode(1, 0),
            Err(CodecError::BadToken)
        );
    }

    #[test]
    fn decoder_reassembles_split_and_joined_messages() {
        let a = Request::Read { path: "/x" }.encode(1, 0).unwrap();
        let b = Request::Rm { path: "/yy" }.encode(2, 0).unwrap();
        let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
        for split in 0..stream.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                d.push(chunk);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].payload, b"/x\0");
            assert_eq!(got[1].header.req_id, 2);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn decoder_refuses_an_overlong_length_before_buffering_it() {
        let mut d = Decoder::new();
        let hdr = XsdSockmsg {
            type_: 2,
            req_id: 1,
            tx_id: 0,
            len: PAYLOAD_MAX as u32 + 1,
        };
        d.push(hdr.as_bytes());
        assert_eq!(
            d.next_message(),
            Err(CodecError::PayloadTooLong {
                len: PAYLOAD_MAX as u64 + 1
            })
        );
        let mut d = Decoder::new();
        d.push(
            XsdSockmsg {
                len: u32::MAX,
                ..hdr
            }
            .as_bytes(),
        );
        assert!(d.next_message().is_err());
        // A header split anywhere is simply incomplete.
        let mut d = Decoder::new();
        d.push(&hdr.as_bytes()[..15]);
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn replies_parse_by_request_type() {
        let r = |ty: XsType, p: &[u8]| parse_reply(ty, 5, &msg(ty as u32, 5, p));
        assert_eq!(
            r(XsType::Read, b"v\0al"),
            Ok(Ok(Reply::Value(b"v\0al".to_vec())))
        );
        assert_eq!(r(XsType::Write, b"OK\0"), Ok(Ok(Reply::Ok)));
        assert_eq!(r(XsType::Rm, b"OK"), Ok(Ok(Reply::Ok)));
        assert_eq!(r(XsType::Write, b"KO\0"), Err(CodecError::NotOk));
        assert_eq!(
            r(XsType::Directory, b"a\0bc\0"),
            Ok(Ok(Reply::Entries(vec!["a".into(), "bc".into()])))
        );
        assert_eq!(r(XsType::Directory, b""), Ok(Ok(Reply::Entries(vec![]))));
        assert_eq!(r(XsType::Directory, b"a\0b"), Err(CodecError::Unterminated));
        assert_eq!(r(XsType::Directory, b"a\0\0"), Err(CodecError::EmptyEntry));
        assert_eq!(r(XsType::Directory, b"\xff\0"), Err(CodecError::NotUtf8));
        assert_eq!(
            r(XsType::TransactionStart, b"42\0"),
            Ok(Ok(Reply::TxId(42)))
        );
        for bad in [
            &b"0\0"[..],
            b"\0",
            b"-1\0",
            b"+1\0",
            b"99999999999\0",
            b"12",
            b"1 \0",
        ] {
            let want = if bad.ends_with(b"\0") {
                CodecError::BadTxId
            } else {
                CodecError::Unterminated
            };
            assert_eq!(r(XsType::TransactionStart, bad), Err(want), "{bad:?}");
        }
        assert_eq!(
            r(XsType::GetDomainPath, b"/local/domain/3\0"),
            Ok(Ok(Reply::Path("/local/domain/3".into())))
        );
    }

    #[test]
    fn errors_and_mismatches() {
        let e = |p: &[u8]| parse_reply(XsType::TransactionEnd, 5, &msg(16, 5, p));
        assert_eq!(e(b"EAGAIN\0"), Ok(Err(XsErrno::EAGAIN)));
        assert_eq!(e(b"ENOENT"), Ok(Err(XsErrno::ENOENT)));
        assert_eq!(e(b"EWHAT\0"), Err(CodecError::UnknownError));
        assert_eq!(e(b""), Err(CodecError::UnknownError));
        assert_eq!(
            parse_reply(XsType::Read, 5, &msg(XsType::Write as u32, 5, b"OK\0")),
            Err(CodecError::UnexpectedType {
                expected: 2,
                got: 11
            })
        );
        assert_eq!(
            parse_reply(XsType::Read, 5, &msg(2, 6, b"")),
            Err(CodecError::UnexpectedReqId {
                expected: 5,
                got: 6
            })
        );
        for (i, e) in XsErrno::ALL.iter().enumerate() {
            assert_eq!(XsErrno::from_name(e.name().as_bytes()), Some(*e));
            assert_eq!(XsErrno::ALL[i], *e);
        }
    }

    #[test]
    fn watch_events() {
        let w = |p: &[u8]| parse_watch_event(&msg(15, 0, p));
        assert_eq!(
            w(b"/a/b\0tok\0"),
            Ok(WatchEvent {
                path: "/a/b".into(),
                token: "tok".into()
            })
        );
        assert_eq!(w(b"/a\0\0").unwrap().token, "");
        for bad in [&b"/a\0tok"[..], b"/a\0", b"\0t\0", b"/a\0t\0x\0", b""] {
            assert_eq!(w(bad), Err(CodecError::BadWatchEvent), "{bad:?}");
        }
        assert!(parse_watch_event(&msg(2, 0, b"/a\0t\0")).is_err());
    }

    #[test]
    fn types_round_trip() {
        for t in XsType::ALL {
            assert_eq!(XsType::from_u32(t as u32), Some(t));
            assert!(t.name().starts_with("XS_"));
        }
        assert_eq!(XsType::from_u32(20), None);
        assert_eq!(XsType::from_u32(XsType::INVALID), None);
    }

    /// Arbitrary bytes never panic the decoder or the parsers, and never buffer more than a
    /// message beyond the last push.
    #[test]
    fn hostile_streams_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let mut d = Decoder::new();
            let n = (rand() % 64) as usize;
            let mut bytes: Vec<u8> = (0..n).map(|_| rand() as u8).collect();
            if rand() % 2 == 0 && bytes.len() >= 16 {
                // A plausible length, so payloads actually get parsed.
                bytes[12..16].copy_from_slice(&((n - 16) as u32).to_ne_bytes());
            }
            d.push(&bytes);
            while let Ok(Some(m)) = d.next_message() {
                for t in XsType::ALL {
                    let _ = parse_reply(t, m.header.req_id, &m);
                }
                let _ = parse_watch_event(&m);
            }
            assert!(d.buffered() <= n);
        }
    }
}
