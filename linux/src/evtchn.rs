//! Event channels over `/dev/xen/evtchn`.
//!
//! Each open handle has its own set of bound ports. A port that fires is reported once by
//! [`Evtchn::wait`] / [`Evtchn::pending`] and stays masked until [`Evtchn::unmask`]: a peer
//! cannot storm the reader faster than it unmasks. Closing the handle unbinds every port.
//!
//! [`Evtchn`] implements [`xen_xenbus::EventChannels`]: the kernel's semantics are the trait's
//! (a fired port is masked until written back). A `read` may return several ports; the ones
//! the trait's one-port [`poll`](EventChannels::poll) / [`wait`](EventChannels::wait) have not
//! handed out yet are queued in the handle (each at most once: a fired port cannot fire again
//! before it is unmasked), and the inherent calls hand them out first too.

use crate::error::{Device, Errno, Error};
use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use xen_gnttab::Domid;
use xen_xenbus::{EventChannels, EvtchnError, Port};

/// A local event-channel port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct EvtchnPort(pub u32);

impl std::fmt::Display for EvtchnPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// Ports read per call at most.
const MAX_READ: usize = 64;

/// A handle on `/dev/xen/evtchn`.
#[derive(Debug)]
pub struct Evtchn {
    file: File,
    state: Mutex<State>,
}

/// What the handle remembers between calls.
#[derive(Debug, Default)]
struct State {
    /// Ports read from the device and not handed out yet.
    fired: VecDeque<EvtchnPort>,
    /// Ports bound through this handle (the kernel ignores writes of other ports; the trait
    /// reports them as invalid).
    bound: BTreeSet<u32>,
}

impl Evtchn {
    /// Opens `/dev/xen/evtchn`. Fails with [`Error::DeviceAbsent`] outside a Xen domain.
    pub fn open() -> Result<Evtchn, Error> {
        Self::open_at(Device::Evtchn.path())
    }

    /// Opens the evtchn device at `path` (for tests and unusual device layouts).
    pub fn open_at(path: impl AsRef<std::path::Path>) -> Result<Evtchn, Error> {
        Ok(Evtchn {
            file: crate::open_device(Device::Evtchn, path.as_ref(), true)?,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a queue and a set, consistent after every single operation.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: a new port that `remote` may bind to.
    pub fn bind_unbound(&self, remote: Domid) -> Result<EvtchnPort, Error> {
        let p = crate::sys::evtchn_bind_unbound(&self.file, remote.0)
            .map_err(Error::kernel(Device::Evtchn, "BIND_UNBOUND_PORT"))?;
        self.state().bound.insert(p);
        Ok(EvtchnPort(p))
    }

    /// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: a new port connected to `remote`'s unbound `port`.
    pub fn bind_interdomain(&self, remote: Domid, port: EvtchnPort) -> Result<EvtchnPort, Error> {
        let p = crate::sys::evtchn_bind_interdomain(&self.file, remote.0, port.0)
            .map_err(Error::kernel(Device::Evtchn, "BIND_INTERDOMAIN"))?;
        self.state().bound.insert(p);
        Ok(EvtchnPort(p))
    }

    /// `IOCTL_EVTCHN_NOTIFY`: signals the other end of `port`.
    pub fn notify(&self, port: EvtchnPort) -> Result<(), Error> {
        crate::sys::evtchn_notify(&self.file, port.0)
            .map_err(Error::kernel(Device::Evtchn, "NOTIFY"))
    }

    /// `IOCTL_EVTCHN_UNBIND`.
    pub fn unbind(&self, port: EvtchnPort) -> Result<(), Error> {
        crate::sys::evtchn_unbind(&self.file, port.0)
            .map_err(Error::kernel(Device::Evtchn, "UNBIND"))?;
        let mut st = self.state();
        st.bound.remove(&port.0);
        st.fired.retain(|p| *p != port);
        Ok(())
    }

    /// Reads the ports the device has now (none if none) into the queue.
    fn read_fired(&self, st: &mut State) -> Result<(), Error> {
        let mut buf = [0u8; 4 * MAX_READ];
        let n = match (&self.file).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => {
                return Err(Error::kernel(Device::Evtchn, "read")(Errno(
                    e.raw_os_error().unwrap_or(0),
                )));
            }
        };
        let ports = parse_ports(&buf[..n])
            .ok_or(Error::kernel(Device::Evtchn, "read")(Errno(libc::EIO)))?;
        st.fired.extend(ports);
        Ok(())
    }

    /// Ports that fired, without waiting (empty if none). Each stays masked until unmasked.
    pub fn pending(&self) -> Result<Vec<EvtchnPort>, Error> {
        let mut st = self.state();
        self.read_fired(&mut st)?;
        Ok(st.fired.drain(..).collect())
    }

    /// Waits up to `timeout` (`None`: forever) for ports to fire; empty on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<EvtchnPort>, Error> {
        if !self.state().fired.is_empty() {
            return self.pending();
        }
        if !crate::sys::poll_readable(&self.file, timeout)
            .map_err(Error::kernel(Device::Evtchn, "poll"))?
        {
            return Ok(Vec::new());
        }
        self.pending()
    }

    /// Unmasks `port` (a `write` of it), so that it can fire again.
    pub fn unmask(&self, port: EvtchnPort) -> Result<(), Error> {
        (&self.file).write_all(&port.0.to_ne_bytes()).map_err(|e| {
            Error::kernel(Device::Evtchn, "write")(Errno(e.raw_os_error().unwrap_or(0)))
        })
    }

    /// The next fired port: a queued one, else one read within `deadline` (`None`: only
    /// what the device has now).
    fn next_fired(&self, deadline: Option<Instant>) -> Result<Option<EvtchnPort>, Error> {
        loop {
            {
                let mut st = self.state();
                if st.fired.is_empty() {
                    self.read_fired(&mut st)?;
                }
                if let Some(p) = st.fired.pop_front() {
                    return Ok(Some(p));
                }
            }
            let Some(deadline) = deadline else {
                return Ok(None);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !crate::sys::poll_readable(&self.file, Some(left))
                    .map_err(Error::kernel(Device::Evtchn, "poll"))?
            {
                return Ok(None);
            }
        }
    }
}

/// An errno of `/dev/xen/evtchn` that no specific [`EvtchnError`] case describes.
fn os_error(e: Error) -> EvtchnError {
    match e {
        Error::Kernel { call, errno, .. } => EvtchnError::Os {
            device: Device::Evtchn.as_str(),
            call,
            errno: errno.0,
            name: errno.name().unwrap_or("errno"),
        },
        _ => EvtchnError::Platform("evtchn device failed"),
    }
}

/// A failed bind to `remote` (`remote_port` for an interdomain bind).
fn bind_error(e: Error, remote: Domid, remote_port: Option<u32>) -> EvtchnError {
    match (e.errno().map_or(0, |e| e.0), remote_port) {
        (libc::ESRCH, _) => EvtchnError::NoSuchDomain { domid: remote },
        (libc::ENOSPC, _) => EvtchnError::NoFreePort,
        (libc::EINVAL, Some(port)) => EvtchnError::NotBindable {
            domid: remote,
            port,
        },
        _ => os_error(e),
    }
}

/// A failed call on a local `port`.
fn port_error(e: Error, port: u32) -> EvtchnError {
    match e.errno().map_or(0, |e| e.0) {
        libc::ENOTCONN | libc::EINVAL => EvtchnError::InvalidPort { port },
        _ => os_error(e),
    }
}

/// The [`EventChannels`] trait over the device. Errors keep their meaning:
///
/// | call | kernel/Xen errno | trait error |
/// |---|---|---|
/// | `alloc_unbound`, `bind_interdomain` | `ESRCH` (no such domain) | [`EvtchnError::NoSuchDomain`] |
/// | `alloc_unbound`, `bind_interdomain` | `ENOSPC` (port table full) | [`EvtchnError::NoFreePort`] |
/// | `bind_interdomain` | `EINVAL` (not an unbound port offered to us) | [`EvtchnError::NotBindable`] |
/// | `notify`, `unbind`, `unmask` | `ENOTCONN`/`EINVAL`, or not bound by this handle | [`EvtchnError::InvalidPort`] |
/// | any | anything else | [`EvtchnError::Os`] with the call and errno |
impl EventChannels for Evtchn {
    fn alloc_unbound(&self, remote: Domid) -> Result<Port, EvtchnError> {
        self.bind_unbound(remote)
            .map(|p| Port(p.0))
            .map_err(|e| bind_error(e, remote, None))
    }
    fn bind_interdomain(&self, remote: Domid, remote_port: Port) -> Result<Port, EvtchnError> {
        Evtchn::bind_interdomain(self, remote, EvtchnPort(remote_port.0))
            .map(|p| Port(p.0))
            .map_err(|e| bind_error(e, remote, Some(remote_port.0)))
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        Evtchn::notify(self, EvtchnPort(port.0)).map_err(|e| port_error(e, port.0))
    }
    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        Evtchn::unbind(self, EvtchnPort(port.0)).map_err(|e| port_error(e, port.0))
    }
    /// The kernel ignores a write of a port this handle has not bound; the trait says so.
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        if !self.state().bound.contains(&port.0) {
            return Err(EvtchnError::InvalidPort { port: port.0 });
        }
        Evtchn::unmask(self, EvtchnPort(port.0)).map_err(os_error)
    }
    /// A queued port, else a non-blocking `read` of the device.
    fn poll(&self) -> Result<Option<Port>, EvtchnError> {
        self.next_fired(None)
            .map(|p| p.map(|p| Port(p.0)))
            .map_err(os_error)
    }
    /// A queued port, else `poll(2)` on the fd until `timeout` (on `CLOCK_MONOTONIC`).
    ///
    /// The common case costs two system calls and no clock read: `poll(2)` with the whole
    /// timeout, then the `read` of the port that fired (libxenvchan's blocking `read` is
    /// one). Only a readable fd that then yields no port (another thread of a shared handle
    /// took it) falls back to a loop on a deadline.
    fn wait(&self, timeout: Duration) -> Result<Option<Port>, EvtchnError> {
        if let Some(p) = self.state().fired.pop_front() {
            return Ok(Some(Port(p.0)));
        }
        if !crate::sys::poll_readable(&self.file, Some(timeout))
            .map_err(Error::kernel(Device::Evtchn, "poll"))
            .map_err(os_error)?
        {
            return Ok(None);
        }
        {
            let mut st = self.state();
            self.read_fired(&mut st).map_err(os_error)?;
            if let Some(p) = st.fired.pop_front() {
                return Ok(Some(Port(p.0)));
            }
        }
        let deadline = Instant::now().checked_add(timeout);
        // A timeout too large to add is no limit in practice: wait a day at a time.
        let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        self.next_fired(Some(deadline))
            .map(|p| p.map(|p| Port(p.0)))
            .map_err(os_error)
    }
}

impl AsFd for Evtchn {
    /// For an event loop: the file is readable when a port has fired.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The ports in a `read` of the device: native-endian `u32`s. `None` if the length is not a
/// whole number of ports (the kernel never does that).
fn parse_ports(bytes: &[u8]) -> Option<Vec<EvtchnPort>> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| EvtchnPort(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_from_whole_words_only() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u32.to_ne_bytes());
        b.extend_from_slice(&77u32.to_ne_bytes());
        assert_eq!(parse_ports(&b), Some(vec![EvtchnPort(5), EvtchnPort(77)]));
        assert_eq!(parse_ports(&[]), Some(vec![]));
        assert_eq!(parse_ports(&b[..5]), None);
    }

    #[test]
    fn absent_device_and_foreign_files() {
        assert!(matches!(
            Evtchn::open_at("/nonexistent-xen/evtchn"),
            Err(Error::DeviceAbsent {
                device: Device::Evtchn,
                ..
            })
        ));
        // A file that is not the device: every ioctl names the call and the kernel's answer.
        let e = Evtchn::open_at("/dev/null").unwrap();
        assert_eq!(
            e.bind_unbound(Domid(0)).unwrap_err().to_string(),
            "evtchn BIND_UNBOUND_PORT: ENOTTY"
        );
        assert_eq!(
            e.notify(EvtchnPort(3)).unwrap_err().to_string(),
            "evtchn NOTIFY: ENOTTY"
        );
        assert_eq!(e.pending().unwrap(), vec![]);
        e.unmask(EvtchnPort(3)).unwrap();
    }

    #[test]
    fn kernel_errnos_become_the_trait_errors() {
        let k = |call, n| Error::kernel(Device::Evtchn, call)(Errno(n));
        let d = Domid(4);
        assert_eq!(
            bind_error(k("BIND_INTERDOMAIN", libc::ESRCH), d, Some(9)),
            EvtchnError::NoSuchDomain { domid: d }
        );
        assert_eq!(
            bind_error(k("BIND_INTERDOMAIN", libc::EINVAL), d, Some(9)),
            EvtchnError::NotBindable { domid: d, port: 9 }
        );
        assert_eq!(
            bind_error(k("BIND_UNBOUND_PORT", libc::ENOSPC), d, None),
            EvtchnError::NoFreePort
        );
        // EINVAL of an unbound-port allocation is not about a remote port: kept as it is.
        assert_eq!(
            bind_error(k("BIND_UNBOUND_PORT", libc::EINVAL), d, None),
            EvtchnError::Os {
                device: "evtchn",
                call: "BIND_UNBOUND_PORT",
                errno: libc::EINVAL,
                name: "EINVAL"
            }
        );
        assert_eq!(
            port_error(k("NOTIFY", libc::ENOTCONN), 5),
            EvtchnError::InvalidPort { port: 5 }
        );
        let odd = port_error(k("UNBIND", 4095), 5);
        assert_eq!(odd.to_string(), "evtchn UNBIND: errno (4095)");
    }

    #[test]
    fn the_trait_over_a_file_that_is_not_the_device() {
        let e = Evtchn::open_at("/dev/null").unwrap();
        let ch: &dyn EventChannels = &e;
        match ch.alloc_unbound(Domid(0)) {
            Err(EvtchnError::Os {
                call: "BIND_UNBOUND_PORT",
                name: "ENOTTY",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ch.unmask(Port(3)),
            Err(EvtchnError::InvalidPort { port: 3 }),
            "not bound through this handle"
        );
        assert_eq!(ch.poll(), Ok(None));
        // /dev/null is always readable and never yields a port: the wait still ends on time.
        let t = Instant::now();
        assert_eq!(ch.wait(Duration::from_millis(50)), Ok(None));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
