//! A xenstore client over `/dev/xen/xenbus`: one request at a time, watch events queued.
//!
//! The kernel device forwards our messages to xenstored (handling watches itself) and queues
//! replies and watch events on the same file, in the wire format of [`crate::xs_wire`].
//! Every reply is checked by the codec; a protocol violation leaves the client broken (the
//! stream cannot be trusted to be in step any more) and every later call fails.

use crate::error::{Device, Errno, Error};
use crate::xs_wire::{self, CodecError, Decoder, Reply, Request, WatchEvent, XsType};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use xen_gnttab::Domid;

/// A xenstore transaction id; [`TxId::NONE`] outside transactions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxId(pub u32);

impl TxId {
    /// No transaction.
    pub const NONE: TxId = TxId(0);
}

/// Watch events kept while waiting for replies; beyond this the oldest are dropped (and
/// counted), so a flood of events cannot grow memory without bound.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// The default limit on waiting for one reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to xenstore through `/dev/xen/xenbus`.
#[derive(Debug)]
pub struct Xenbus {
    file: File,
    decoder: Decoder,
    next_req_id: u32,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
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
        Ok(Xenbus {
            file,
            decoder: Decoder::new(),
            next_req_id: 1,
            events: VecDeque::new(),
            dropped_events: 0,
            broken: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long a call waits for its reply (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Watch events dropped because more than [`MAX_QUEUED_EVENTS`] were waiting.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

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

    fn queue_event(&mut self, ev: WatchEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(ev);
    }

    /// Reads what the device has, waiting until `deadline`. False on timeout.
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
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        let bytes = req
            .encode(req_id, tx.0)
            .map_err(|what| Error::InvalidArgument {
                device: Device::Xenbus,
                call,
                what: what.to_string(),
            })?;
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
            return match xs_wire::parse_reply(req.msg_type(), req_id, &msg) {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(errno)) => Err(Error::Xenstore { call, errno }),
                Err(e) => Err(self.protocol(call, e)),
            };
        }
    }

    fn expect_ok(&mut self, req: Request<'_>, tx: TxId) -> Result<(), Error> {
        match self.request(req, tx)? {
            Reply::Ok => Ok(()),
            other => Err(self.unexpected(req, other)),
        }
    }

    fn unexpected(&mut self, req: Request<'_>, _reply: Reply) -> Error {
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

    /// `XS_READ`: the value of `path`.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, Error> {
        let req = Request::Read { path };
        match self.request(req, tx)? {
            Reply::Value(v) => Ok(v),
            other => Err(self.unexpected(req, other)),
        }
    }

    /// `XS_WRITE`: sets `path` to `value`, creating it (and its parents).
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), Error> {
        self.expect_ok(Request::Write { path, value }, tx)
    }

    /// `XS_MKDIR`: creates `path` with an empty value.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        self.expect_ok(Request::Mkdir { path }, tx)
    }

    /// `XS_RM`: removes `path` and everything below it.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        self.expect_ok(Request::Rm { path }, tx)
    }

    /// `XS_DIRECTORY`: the names of `path`'s children.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, Error> {
        let req = Request::Directory { path };
        match self.request(req, tx)? {
            Reply::Entries(v) => Ok(v),
            other => Err(self.unexpected(req, other)),
        }
    }

    /// `XS_WATCH`: events for `path` and below arrive with `token` (xenstore fires one at
    /// once for the path itself).
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.expect_ok(Request::Watch { path, token }, TxId::NONE)
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.expect_ok(Request::Unwatch { path, token }, TxId::NONE)
    }

    /// The next watch event: a queued one, or one that arrives within `timeout` (`None`: no
    /// limit). `Ok(None)` on timeout.
    pub fn next_watch_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<WatchEvent>, Error> {
        const CALL: &str = "XS_WATCH_EVENT";
        self.check_broken()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(Some(ev));
            }
            match self.decoder.next_message() {
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

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start(&mut self) -> Result<TxId, Error> {
        let req = Request::TransactionStart;
        match self.request(req, TxId::NONE)? {
            Reply::TxId(id) => Ok(TxId(id)),
            other => Err(self.unexpected(req, other)),
        }
    }

    /// `XS_TRANSACTION_END`: commits (or aborts) `tx`. A conflicting transaction fails with
    /// [`Error::Xenstore`] `EAGAIN` ([`Error::is_xenstore_eagain`]): start again.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error> {
        self.expect_ok(Request::TransactionEnd { commit }, tx)
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn domain_path(&mut self, domid: Domid) -> Result<String, Error> {
        let req = Request::GetDomainPath { domid: domid.0 };
        match self.request(req, TxId::NONE)? {
            Reply::Path(p) => Ok(p),
            other => Err(self.unexpected(req, other)),
        }
    }

    /// This domain's id, from its own `domid` node (written by the toolstack).
    pub fn own_domid(&mut self) -> Result<Domid, Error> {
        const CALL: &str = "XS_READ";
        let v = self.read(TxId::NONE, "domid")?;
        std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim_end_matches('\0').parse::<u16>().ok())
            .map(Domid)
            .filter(|d| d.is_real())
            .ok_or(Error::Protocol {
                call: CALL,
                error: CodecError::BadDomid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut xs = Xenbus::open_at("/dev/null").unwrap();
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
}
