//! A xenstore client over `/dev/xen/xenbus`: one request at a time, watch events queued.
//!
//! The kernel device forwards our messages to xenstored (handling watches itself) and queues
//! replies and watch events on the same file, in the wire format of [`crate::xs_wire`].
//! Every reply is checked by the codec; a protocol violation leaves the client broken (the
//! stream cannot be trusted to be in step any more) and every later call fails.
//!
//! Watch events that arrive while a call waits for its reply are queued apart from replies
//! (at most [`MAX_QUEUED_EVENTS`]) and handed out by [`Xenbus::next_watch_event`]. A reply
//! that does not come within the timeout fails the call; if it arrives later it is
//! recognised by its request id and dropped, so the connection stays in step.
//!
//! [`Xenbus`] implements [`xen_xenbus::Xenstore`], so every driver and the XenbusState
//! handshake of `xen-xenbus` run on it unchanged; see the crate docs for how errors map.

use crate::error::{Device, Errno, Error};
use crate::xs_wire::{self, CodecError, Decoder, Reply, Request, WatchEvent, XsType};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use xen_gnttab::Domid;
use xen_xenbus::{Perms, Xenstore};

/// A xenstore transaction id; [`TxId::NONE`] outside transactions. The same type as
/// `xen-xenbus`'s [`Tx`](xen_xenbus::Tx), so ids pass between the two APIs unchanged.
pub type TxId = xen_xenbus::Tx;

/// Watch events kept while waiting for replies; beyond this the oldest are dropped (and
/// counted), so a flood of events cannot grow memory without bound.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Requests that timed out whose late replies are still recognised and dropped; a connection
/// with more unanswered requests than this is given up as broken.
pub const MAX_ABANDONED: usize = 16;

/// The default limit on waiting for one reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to xenstore through `/dev/xen/xenbus`.
///
/// Calls take `&self` (the connection is behind a mutex, one request at a time), so one
/// connection can be shared, by reference, between a driver and the handshake that runs on
/// it. A call waiting for a watch event holds the connection for that wait.
#[derive(Debug)]
pub struct Xenbus {
    conn: Mutex<Conn>,
    domid: OnceLock<Domid>,
    epoch: Instant,
}

/// The state behind the mutex.
#[derive(Debug)]
struct Conn {
    file: File,
    decoder: Decoder,
    next_req_id: u32,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
    abandoned: VecDeque<u32>,
    broken: Option<(&'static str, CodecError)>,
    timeout: Duration,
}

impl Xenbus {
    /// Opens `/dev/xen/xenbus`. Fails with [`Error::DeviceAbsent`] outside a Xen domain.
    pub fn open() -> Result<Xenbus, Error> {
        Self::open_at(Device::Xenbus.path())
    }

    /// Opens the xenbus device at `path` (for tests and unusual device layouts).
    pub fn open_at(path: impl AsRef<std::path::Path>) -> Result<Xenbus, Error> {
        let file = crate::open_device(Device::Xenbus, path.as_ref(), false)?;
        Ok(Self::from_file(file))
    }

    /// A client over an already open stream that speaks the xenstore wire protocol.
    pub(crate) fn from_file(file: File) -> Xenbus {
        Xenbus {
            conn: Mutex::new(Conn {
                file,
                decoder: Decoder::new(),
                next_req_id: 1,
                events: VecDeque::new(),
                dropped_events: 0,
                abandoned: VecDeque::new(),
                broken: None,
                timeout: DEFAULT_TIMEOUT,
            }),
            domid: OnceLock::new(),
            epoch: Instant::now(),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock cannot leave the stream out of step without also
        // marking it broken, so the state is usable as it is.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how long a call waits for its reply (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&self, timeout: Duration) {
        self.conn().timeout = timeout;
    }

    /// Watch events dropped because more than [`MAX_QUEUED_EVENTS`] were waiting.
    pub fn dropped_events(&self) -> u64 {
        self.conn().dropped_events
    }

    /// Sets the domain id [`Xenstore::domid`] reports, instead of reading it from xenstore.
    /// Fails (returning the id already known) if it was already learnt or set.
    pub fn set_domid(&self, domid: Domid) -> Result<(), Domid> {
        self.domid
            .set(domid)
            .map_err(|_| *self.domid.get().unwrap_or(&domid))
    }

    fn request(&self, req: Request<'_>, tx: TxId) -> Result<Reply, Error> {
        self.conn().request(req, tx)
    }

    fn expect_ok(&self, req: Request<'_>, tx: TxId) -> Result<(), Error> {
        match self.request(req, tx)? {
            Reply::Ok => Ok(()),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// `XS_READ`: the value of `path`.
    pub fn read(&self, tx: TxId, path: &str) -> Result<Vec<u8>, Error> {
        let req = Request::Read { path };
        match self.request(req, tx)? {
            Reply::Value(v) => Ok(v),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// `XS_WRITE`: sets `path` to `value`, creating it (and its parents).
    pub fn write(&self, tx: TxId, path: &str, value: &[u8]) -> Result<(), Error> {
        self.expect_ok(Request::Write { path, value }, tx)
    }

    /// `XS_MKDIR`: creates `path` with an empty value.
    pub fn mkdir(&self, tx: TxId, path: &str) -> Result<(), Error> {
        self.expect_ok(Request::Mkdir { path }, tx)
    }

    /// `XS_RM`: removes `path` and everything below it.
    pub fn rm(&self, tx: TxId, path: &str) -> Result<(), Error> {
        self.expect_ok(Request::Rm { path }, tx)
    }

    /// `XS_DIRECTORY`: the names of `path`'s children.
    pub fn directory(&self, tx: TxId, path: &str) -> Result<Vec<String>, Error> {
        let req = Request::Directory { path };
        match self.request(req, tx)? {
            Reply::Entries(v) => Ok(v),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// `XS_GET_PERMS`: `path`'s permission list, owner first.
    pub fn get_perms(&self, tx: TxId, path: &str) -> Result<Perms, Error> {
        let req = Request::GetPerms { path };
        match self.request(req, tx)? {
            // The codec checked the list's shape; the parser bounds its length and domids.
            Reply::Perms(wire) => Perms::from_wire(path, &wire).map_err(|_| Error::Protocol {
                call: XsType::GetPerms.name(),
                error: CodecError::BadPerms,
            }),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// `XS_SET_PERMS`: replaces `path`'s permission list.
    pub fn set_perms(&self, tx: TxId, path: &str, perms: &Perms) -> Result<(), Error> {
        let wire = perms.to_wire();
        self.expect_ok(Request::SetPerms { path, perms: &wire }, tx)
    }

    /// `XS_WATCH`: events for `path` and below arrive with `token` (xenstore fires one at
    /// once for the path itself).
    pub fn watch(&self, path: &str, token: &str) -> Result<(), Error> {
        self.expect_ok(Request::Watch { path, token }, TxId::NONE)
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), Error> {
        self.expect_ok(Request::Unwatch { path, token }, TxId::NONE)
    }

    /// The next watch event: a queued one, or one that arrives within `timeout` (`None`: no
    /// limit; `Some(ZERO)`: only what has already arrived). `Ok(None)` on timeout.
    pub fn next_watch_event(&self, timeout: Option<Duration>) -> Result<Option<WatchEvent>, Error> {
        self.conn().next_watch_event(timeout)
    }

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start(&self) -> Result<TxId, Error> {
        let req = Request::TransactionStart;
        match self.request(req, TxId::NONE)? {
            Reply::TxId(id) => Ok(xen_xenbus::Tx(id)),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// `XS_TRANSACTION_END`: commits (or aborts) `tx`. A conflicting transaction fails with
    /// [`Error::Xenstore`] `EAGAIN` ([`Error::is_xenstore_eagain`]): start again.
    pub fn transaction_end(&self, tx: TxId, commit: bool) -> Result<(), Error> {
        self.expect_ok(Request::TransactionEnd { commit }, tx)
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn domain_path(&self, domid: Domid) -> Result<String, Error> {
        let req = Request::GetDomainPath { domid: domid.0 };
        match self.request(req, TxId::NONE)? {
            Reply::Path(p) => Ok(p),
            _ => Err(self.conn().unexpected(req)),
        }
    }

    /// This domain's id, from its own `domid` node (written by the toolstack). Remembered
    /// once read, for [`Xenstore::domid`].
    pub fn own_domid(&self) -> Result<Domid, Error> {
        if let Some(d) = self.domid.get() {
            return Ok(*d);
        }
        let v = self.read(TxId::NONE, "domid")?;
        let d = parse_domid(&v).ok_or(Error::Protocol {
            call: XsType::Read.name(),
            error: CodecError::BadDomid,
        })?;
        Ok(*self.domid.get_or_init(|| d))
    }
}

/// A `domid` node's value: a real domain's decimal id (a trailing NUL tolerated).
fn parse_domid(v: &[u8]) -> Option<Domid> {
    std::str::from_utf8(v)
        .ok()
        .map(|s| s.trim_end_matches('\0'))
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .map(Domid)
        .filter(|d| d.is_real())
}

impl Conn {
    fn check_broken(&self) -> Result<(), Error> {
        match &self.broken {
            Some((call, error)) => Err(Error::Protocol {
                call,
                error: error.clone(),
            }),
            None => Ok(()),
        }
    }

    fn protocol(&mut self, call: &'static str, error: CodecError) -> Error {
        self.broken = Some((call, error.clone()));
        Error::Protocol { call, error }
    }

    fn unexpected(&mut self, req: Request<'_>) -> Error {
        // `parse_reply` shapes replies by request type, so this cannot happen; treat it as a
        // protocol error rather than panicking.
        self.protocol(
            req.msg_type().name(),
            CodecError::UnexpectedType {
                expected: req.msg_type() as u32,
                got: req.msg_type() as u32,
            },
        )
    }

    fn queue_event(&mut self, ev: WatchEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(ev);
    }

    /// A late reply to a request that timed out: true (and forgotten) if `msg` is one.
    fn is_abandoned(&mut self, msg: &xs_wire::Message) -> bool {
        match self
            .abandoned
            .iter()
            .position(|id| *id == msg.header.req_id)
        {
            Some(i) => {
                self.abandoned.remove(i);
                true
            }
            None => false,
        }
    }

    /// Reads what the stream has, waiting until `deadline` (`None`: no limit). False on
    /// timeout.
    fn fill(&mut self, call: &'static str, deadline: Option<Instant>) -> Result<bool, Error> {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if !crate::sys::poll_readable(&self.file, left)
            .map_err(Error::kernel(Device::Xenbus, call))?
        {
            return Ok(false);
        }
        let mut buf = [0u8; xs_wire::HEADER_LEN + xs_wire::PAYLOAD_MAX];
        let n = loop {
            match self.file.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::kernel(Device::Xenbus, call)(Errno(
                        e.raw_os_error().unwrap_or(0),
                    )));
                }
            }
        };
        if n == 0 {
            return Err(Error::kernel(Device::Xenbus, call)(Errno(libc::EPIPE)));
        }
        self.decoder.push(&buf[..n]);
        Ok(true)
    }

    /// Sends `req` and waits for its reply, queueing watch events that arrive meanwhile.
    fn request(&mut self, req: Request<'_>, tx: TxId) -> Result<Reply, Error> {
        let call = req.msg_type().name();
        self.check_broken()?;
        let bytes = req
            .encode(self.next_req_id, tx.0)
            .map_err(|error| Error::BadRequest { call, error })?;
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        // The device takes a whole message per write.
        self.file.write_all(&bytes).map_err(|e| {
            Error::kernel(Device::Xenbus, call)(Errno(e.raw_os_error().unwrap_or(0)))
        })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = match self.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if !self.fill(call, Some(deadline))? {
                        if self.abandoned.len() == MAX_ABANDONED {
                            return Err(self.protocol(
                                call,
                                CodecError::UnexpectedReqId {
                                    expected: req_id,
                                    got: 0,
                                },
                            ));
                        }
                        self.abandoned.push_back(req_id);
                        return Err(Error::Timeout {
                            device: Device::Xenbus,
                            call,
                            seconds: self.timeout.as_secs(),
                        });
                    }
                    continue;
                }
                Err(e) => return Err(self.protocol(call, e)),
            };
            if msg.header.type_ == XsType::WatchEvent as u32 {
                match xs_wire::parse_watch_event(&msg) {
                    Ok(ev) => self.queue_event(ev),
                    Err(e) => return Err(self.protocol(call, e)),
                }
                continue;
            }
            if msg.header.req_id != req_id && self.is_abandoned(&msg) {
                continue;
            }
            return match xs_wire::parse_reply(req.msg_type(), req_id, &msg) {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(errno)) => Err(Error::Xenstore { call, errno }),
                Err(e) => Err(self.protocol(call, e)),
            };
        }
    }

    fn next_watch_event(&mut self, timeout: Option<Duration>) -> Result<Option<WatchEvent>, Error> {
        const CALL: &str = "XS_WATCH_EVENT";
        self.check_broken()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(Some(ev));
            }
            match self.decoder.next_message() {
                Ok(Some(msg)) if self.is_abandoned(&msg) => {}
                Ok(Some(msg)) => match xs_wire::parse_watch_event(&msg) {
                    Ok(ev) => return Ok(Some(ev)),
                    // A reply with no request outstanding is as bad as a malformed event.
                    Err(e) => return Err(self.protocol(CALL, e)),
                },
                Ok(None) => {
                    if !self.fill(CALL, deadline)? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(self.protocol(CALL, e)),
            }
        }
    }
}

/// The [`Xenstore`] trait over the client: the same calls, with the errors of the trait.
///
/// | client error | trait [`Errno`](xen_xenbus::Errno) |
/// |---|---|
/// | [`Error::Xenstore`] (xenstored's `XS_ERROR` string) | the same name (`"EAGAIN"` is [`Again`](xen_xenbus::Errno::Again)) |
/// | [`Error::Kernel`] (the device's `write`/`read`/`poll`) | the same name where the trait has it; `ESRCH` (the kernel's "no such transaction") is `NoEnt`, `EFBIG` is `TooBig`; anything else, and `EAGAIN`, is `Io` (a kernel `EAGAIN` is never a transaction conflict) |
/// | [`Error::BadRequest`] | `TooBig` for over-long paths and payloads, `Inval` otherwise |
/// | [`Error::Timeout`], [`Error::Protocol`] | `Io`: the daemon is gone or its reply malformed |
impl Xenstore for Xenbus {
    /// This domain's id: set by [`Xenbus::set_domid`] or read once from the `domid` node
    /// ([`Xenbus::own_domid`]). If it cannot be learnt this is
    /// [`Domid::SELF`](xen_gnttab::Domid::SELF), which no node path accepts, so callers that
    /// build paths from it fail with a typed error instead of touching another domain's keys.
    fn domid(&self) -> Domid {
        self.own_domid().unwrap_or(Domid::SELF)
    }
    /// [`Instant`]-based: `CLOCK_MONOTONIC`, since the connection was opened.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
    fn read(&self, tx: xen_xenbus::Tx, path: &str) -> Result<Vec<u8>, xen_xenbus::Errno> {
        Xenbus::read(self, tx, path).map_err(|e| e.xenstore_errno())
    }
    fn write(&self, tx: xen_xenbus::Tx, path: &str, value: &[u8]) -> Result<(), xen_xenbus::Errno> {
        Xenbus::write(self, tx, path, value).map_err(|e| e.xenstore_errno())
    }
    fn mkdir(&self, tx: xen_xenbus::Tx, path: &str) -> Result<(), xen_xenbus::Errno> {
        Xenbus::mkdir(self, tx, path).map_err(|e| e.xenstore_errno())
    }
    fn rm(&self, tx: xen_xenbus::Tx, path: &str) -> Result<(), xen_xenbus::Errno> {
        Xenbus::rm(self, tx, path).map_err(|e| e.xenstore_errno())
    }
    fn directory(&self, tx: xen_xenbus::Tx, path: &str) -> Result<Vec<String>, xen_xenbus::Errno> {
        Xenbus::directory(self, tx, path).map_err(|e| e.xenstore_errno())
    }
    fn get_perms(&self, tx: xen_xenbus::Tx, path: &str) -> Result<Perms, xen_xenbus::Errno> {
        Xenbus::get_perms(self, tx, path).map_err(|e| e.xenstore_errno())
    }
    fn set_perms(
        &self,
        tx: xen_xenbus::Tx,
        path: &str,
        perms: &Perms,
    ) -> Result<(), xen_xenbus::Errno> {
        Xenbus::set_perms(self, tx, path, perms).map_err(|e| e.xenstore_errno())
    }
    fn transaction_start(&self) -> Result<xen_xenbus::Tx, xen_xenbus::Errno> {
        Xenbus::transaction_start(self).map_err(|e| e.xenstore_errno())
    }
    fn transaction_end(&self, tx: xen_xenbus::Tx, commit: bool) -> Result<(), xen_xenbus::Errno> {
        Xenbus::transaction_end(self, tx, commit).map_err(|e| e.xenstore_errno())
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), xen_xenbus::Errno> {
        Xenbus::watch(self, path, token).map_err(|e| e.xenstore_errno())
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), xen_xenbus::Errno> {
        Xenbus::unwatch(self, path, token).map_err(|e| e.xenstore_errno())
    }
    /// A queued event, or one already readable on the fd (`poll(2)` with a zero timeout).
    fn poll_watch(&self) -> Result<Option<xen_xenbus::WatchEvent>, xen_xenbus::Errno> {
        self.wait_watch(Duration::ZERO)
    }
    /// `poll(2)` on the fd until the timeout; replies never end up here.
    fn wait_watch(
        &self,
        timeout: Duration,
    ) -> Result<Option<xen_xenbus::WatchEvent>, xen_xenbus::Errno> {
        match self.next_watch_event(Some(timeout)) {
            Ok(ev) => Ok(ev.map(|e| xen_xenbus::WatchEvent {
                path: e.path,
                token: e.token,
            })),
            Err(e) => Err(e.xenstore_errno()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_xenbus::Tx;

    #[test]
    fn absent_device_is_reported_as_such() {
        match Xenbus::open_at("/nonexistent-xen/xenbus") {
            Err(
                e @ Error::DeviceAbsent {
                    device: Device::Xenbus,
                    errno: Errno(libc::ENOENT),
                },
            ) => assert!(e.to_string().contains("not running in a Xen domain")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_device_that_is_not_xenbus_fails_with_a_named_call() {
        // /dev/null accepts the request and then reads end-of-file: the call fails, naming it.
        let xs = Xenbus::open_at("/dev/null").unwrap();
        xs.set_timeout(Duration::from_secs(5));
        let e = xs.read(TxId::NONE, "/x").unwrap_err();
        assert_eq!(e.to_string(), "xenbus XS_READ: EPIPE");
        let e = xs.read(TxId::NONE, "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("xenbus XS_READ: invalid argument: path"),
            "{e}"
        );
    }

    /// A scripted xenstored on the other end of a socket pair: `script` answers each request
    /// with raw messages (it may sleep to delay them). The thread ends when the client hangs
    /// up or the script returns `None`.
    fn fake_xenstored(
        mut script: impl FnMut(&xs_wire::Message) -> Option<Vec<Vec<u8>>> + Send + 'static,
    ) -> (Xenbus, std::thread::JoinHandle<Vec<xs_wire::Message>>) {
        use std::os::fd::OwnedFd;
        use std::os::unix::net::UnixStream;
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let xs = Xenbus::from_file(File::from(OwnedFd::from(ours)));
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut dec = Decoder::new();
            let mut buf = [0u8; 8192];
            loop {
                while let Some(m) = dec.next_message().unwrap() {
                    let Some(replies) = script(&m) else {
                        return seen;
                    };
                    seen.push(m);
                    for r in replies {
                        if theirs.write_all(&r).is_err() {
                            return seen;
                        }
                    }
                }
                match theirs.read(&mut buf) {
                    Ok(0) | Err(_) => return seen,
                    Ok(n) => dec.push(&buf[..n]),
                }
            }
        });
        (xs, server)
    }

    fn wire(ty: XsType, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let hdr = xs_wire::XsdSockmsg {
            type_: ty as u32,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        let mut m = zerocopy::IntoBytes::as_bytes(&hdr).to_vec();
        m.extend_from_slice(payload);
        m
    }

    fn path_of(m: &xs_wire::Message) -> &[u8] {
        m.payload.split(|b| *b == 0).next().unwrap()
    }

    #[test]
    fn the_trait_speaks_the_wire_protocol_and_maps_xenstore_errors() {
        use xen_xenbus::{Errno as X, ParseErrorKind, XenbusError, XenstoreExt};
        let (xs, server) = fake_xenstored(|m| {
            let id = m.header.req_id;
            let ty = XsType::from_u32(m.header.type_).unwrap();
            Some(vec![match (ty, path_of(m)) {
                (XsType::Read, b"/ok") => wire(XsType::Read, id, b"42"),
                (XsType::Read, b"/hostile") => wire(XsType::Read, id, b"4x2"),
                (XsType::Read, b"/domid" | b"domid") => wire(XsType::Read, id, b"7"),
                (XsType::Read, _) => wire(XsType::Error, id, b"ENOENT\0"),
                (XsType::Write, b"/ro") => wire(XsType::Error, id, b"EACCES\0"),
                (XsType::GetPerms, _) => wire(XsType::GetPerms, id, b"n7\0r0\0"),
                (XsType::Directory, _) => wire(XsType::Directory, id, b"a\0b\0"),
                _ => wire(ty, id, b"OK\0"),
            }])
        });
        let t: &dyn Xenstore = &xs;
        assert_eq!(t.domid(), Domid(7), "learnt from the domid node");
        assert_eq!(t.read(Tx::NONE, "/ok"), Ok(b"42".to_vec()));
        assert_eq!(t.read(Tx::NONE, "/gone"), Err(X::NoEnt));
        assert_eq!(t.write(Tx::NONE, "/ro", b"v"), Err(X::Acces));
        assert_eq!(
            t.directory(Tx::NONE, "/d"),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            t.get_perms(Tx::NONE, "/p"),
            Ok(Perms::shared_read(Domid(7), Domid(0)).tap_others(xen_xenbus::Perm::None))
        );
        t.set_perms(Tx(3), "/p", &Perms::shared_read(Domid(7), Domid(0)))
            .unwrap();
        assert_eq!(xs.read_u32(Tx::NONE, "/ok"), Ok(42));
        assert_eq!(
            xs.read_u32(Tx::NONE, "/hostile"),
            Err(XenbusError::Parse {
                path: "/hostile".into(),
                kind: ParseErrorKind::InvalidByte { byte: b'x', at: 1 }
            })
        );
        assert_eq!(
            xs.read_state(Tx::NONE, "/gone").unwrap_err().parse_kind(),
            Some(&ParseErrorKind::Missing)
        );
        // Refused before anything is sent.
        assert_eq!(t.read(Tx::NONE, ""), Err(X::Inval));
        let long = format!("/{}", "x".repeat(xs_wire::ABS_PATH_MAX));
        assert_eq!(t.read(Tx::NONE, &long), Err(X::TooBig));
        assert_eq!(t.write(Tx::NONE, "/big", &[b'v'; 5000]), Err(X::TooBig));
        drop(xs);
        let seen = server.join().unwrap();
        let set = seen
            .iter()
            .find(|m| m.header.type_ == XsType::SetPerms as u32)
            .unwrap();
        assert_eq!(set.header.tx_id, 3, "the transaction id goes in the header");
        assert_eq!(set.payload, b"/p\0n7\0r0\0");
        assert!(
            seen.iter().all(|m| m.payload.len() <= xs_wire::PAYLOAD_MAX),
            "nothing oversized was sent"
        );
    }

    trait TapOthers {
        fn tap_others(self, p: xen_xenbus::Perm) -> Self;
    }
    impl TapOthers for Perms {
        fn tap_others(mut self, p: xen_xenbus::Perm) -> Self {
            self.others = p;
            self
        }
    }

    #[test]
    fn transact_retries_a_commit_that_fails_with_eagain() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let ends = Arc::new(AtomicU32::new(0));
        let ends2 = ends.clone();
        let (xs, server) = fake_xenstored(move |m| {
            let id = m.header.req_id;
            Some(vec![match XsType::from_u32(m.header.type_).unwrap() {
                XsType::TransactionStart => wire(XsType::TransactionStart, id, b"9\0"),
                XsType::TransactionEnd if ends2.fetch_add(1, Ordering::SeqCst) < 2 => {
                    wire(XsType::Error, id, b"EAGAIN\0")
                }
                ty => wire(ty, id, b"OK\0"),
            }])
        });
        let mut runs = 0;
        xen_xenbus::transact(&xs, 5, |tx| {
            runs += 1;
            assert_eq!(tx, Tx(9));
            xen_xenbus::XenstoreExt::write_str(&xs, tx, "/k", "v")
        })
        .unwrap();
        assert_eq!((runs, ends.load(Ordering::SeqCst)), (3, 3));
        // Out of attempts: the typed conflict error.
        ends.store(0, Ordering::SeqCst);
        assert_eq!(
            xen_xenbus::transact(&xs, 2, |_| Ok::<_, xen_xenbus::XenbusError>(())),
            Err(xen_xenbus::XenbusError::Conflict { attempts: 2 })
        );
        drop(xs);
        server.join().unwrap();
    }

    #[test]
    fn watch_events_are_queued_apart_from_replies() {
        let (xs, server) = fake_xenstored(|m| {
            let id = m.header.req_id;
            let ty = XsType::from_u32(m.header.type_).unwrap();
            Some(match ty {
                // The kernel fires a new watch at once: the event may come before the reply.
                XsType::Watch => vec![
                    wire(XsType::WatchEvent, 0, b"/w\0tok\0"),
                    wire(XsType::Watch, id, b"OK\0"),
                ],
                XsType::Read => vec![
                    wire(XsType::WatchEvent, 0, b"/w/x\0tok\0"),
                    wire(XsType::Read, id, b"value"),
                    wire(XsType::WatchEvent, 0, b"/w/y\0tok\0"),
                ],
                _ => vec![wire(ty, id, b"OK\0")],
            })
        });
        let t: &dyn Xenstore = &xs;
        t.watch("/w", "tok").unwrap();
        assert_eq!(t.read(Tx::NONE, "/r"), Ok(b"value".to_vec()));
        let ev = |p: &str| {
            Some(xen_xenbus::WatchEvent {
                path: p.into(),
                token: "tok".into(),
            })
        };
        assert_eq!(t.poll_watch(), Ok(ev("/w")));
        assert_eq!(t.poll_watch(), Ok(ev("/w/x")));
        // The third arrived after the reply: still on the socket until asked for.
        assert_eq!(t.wait_watch(Duration::from_secs(5)), Ok(ev("/w/y")));
        let start = Instant::now();
        assert_eq!(t.wait_watch(Duration::from_millis(80)), Ok(None));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(80) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(t.poll_watch(), Ok(None));
        drop(xs);
        server.join().unwrap();
    }

    #[test]
    fn a_late_reply_after_a_timeout_is_dropped_and_the_stream_stays_in_step() {
        let (xs, server) = fake_xenstored(|m| {
            let id = m.header.req_id;
            if path_of(m) == b"/slow" {
                std::thread::sleep(Duration::from_millis(300));
                return Some(vec![wire(XsType::Read, id, b"late")]);
            }
            Some(vec![wire(XsType::Read, id, b"fresh")])
        });
        xs.set_timeout(Duration::from_millis(100));
        match xs.read(TxId::NONE, "/slow") {
            Err(e @ Error::Timeout { .. }) => {
                assert_eq!(e.xenstore_errno(), xen_xenbus::Errno::Io)
            }
            other => panic!("{other:?}"),
        }
        xs.set_timeout(Duration::from_secs(5));
        assert_eq!(xs.read(TxId::NONE, "/fast").unwrap(), b"fresh");
        assert_eq!(xs.read(TxId::NONE, "/fast").unwrap(), b"fresh");
        drop(xs);
        server.join().unwrap();
    }

    #[test]
    fn a_reply_out_of_step_breaks_the_connection_for_good() {
        let (xs, server) =
            fake_xenstored(|m| Some(vec![wire(XsType::Read, m.header.req_id + 5, b"stray")]));
        let t: &dyn Xenstore = &xs;
        assert_eq!(t.read(Tx::NONE, "/a"), Err(xen_xenbus::Errno::Io));
        match xs.read(TxId::NONE, "/a") {
            Err(Error::Protocol {
                error: CodecError::UnexpectedReqId { .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(t.wait_watch(Duration::ZERO), Err(xen_xenbus::Errno::Io));
        drop(xs);
        server.join().unwrap();
    }

    #[test]
    fn a_daemon_that_hangs_up_is_eio_and_domid_falls_back_to_self() {
        let (xs, server) = fake_xenstored(|_| None);
        let t: &dyn Xenstore = &xs;
        assert_eq!(t.read(Tx::NONE, "/a"), Err(xen_xenbus::Errno::Io));
        assert_eq!(t.domid(), Domid::SELF);
        xs.set_domid(Domid(3)).unwrap();
        assert_eq!(t.domid(), Domid(3));
        assert_eq!(xs.set_domid(Domid(4)), Err(Domid(3)));
        server.join().unwrap();
    }
}
