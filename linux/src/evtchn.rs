//! Event channels over `/dev/xen/evtchn`.
//!
//! Each open handle has its own set of bound ports. A port that fires is reported once by
//! [`Evtchn::wait`] / [`Evtchn::pending`] and stays masked until [`Evtchn::unmask`]: a peer
//! cannot storm the reader faster than it unmasks. Closing the handle unbinds every port.

use crate::error::{Device, Errno, Error};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use xen_gnttab::Domid;

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
        })
    }

    /// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: a new port that `remote` may bind to.
    pub fn bind_unbound(&self, remote: Domid) -> Result<EvtchnPort, Error> {
        crate::sys::evtchn_bind_unbound(&self.file, remote.0)
            .map(EvtchnPort)
            .map_err(Error::kernel(Device::Evtchn, "BIND_UNBOUND_PORT"))
    }

    /// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: a new port connected to `remote`'s unbound `port`.
    pub fn bind_interdomain(&self, remote: Domid, port: EvtchnPort) -> Result<EvtchnPort, Error> {
        crate::sys::evtchn_bind_interdomain(&self.file, remote.0, port.0)
            .map(EvtchnPort)
            .map_err(Error::kernel(Device::Evtchn, "BIND_INTERDOMAIN"))
    }

    /// `IOCTL_EVTCHN_NOTIFY`: signals the other end of `port`.
    pub fn notify(&self, port: EvtchnPort) -> Result<(), Error> {
        crate::sys::evtchn_notify(&self.file, port.0)
            .map_err(Error::kernel(Device::Evtchn, "NOTIFY"))
    }

    /// `IOCTL_EVTCHN_UNBIND`.
    pub fn unbind(&self, port: EvtchnPort) -> Result<(), Error> {
        crate::sys::evtchn_unbind(&self.file, port.0)
            .map_err(Error::kernel(Device::Evtchn, "UNBIND"))
    }

    /// Ports that fired, without waiting (empty if none). Each stays masked until unmasked.
    pub fn pending(&self) -> Result<Vec<EvtchnPort>, Error> {
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
        parse_ports(&buf[..n]).ok_or(Error::kernel(Device::Evtchn, "read")(Errno(libc::EIO)))
    }

    /// Waits up to `timeout` (`None`: forever) for ports to fire; empty on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<EvtchnPort>, Error> {
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
}
