//! Errors: every failure names the device and the call, and carries the kernel's `errno` or
//! xenstore's error string as a typed value.

use crate::xs_wire::{CodecError, XsErrno};
use std::fmt;
use xen_gnttab::GrantError;

/// An `errno` value from the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`EINVAL`) of the errnos these devices return, or `None`.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::ENOTTY => "ENOTTY",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTCONN => "ENOTCONN",
            libc::EISCONN => "EISCONN",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EROFS => "EROFS",
            libc::EISDIR => "EISDIR",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EPIPE => "EPIPE",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// A Linux Xen device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Device {
    /// `/dev/xen/gntalloc`: granting pages.
    Gntalloc,
    /// `/dev/xen/gntdev`: mapping and copying foreign grants.
    Gntdev,
    /// `/dev/xen/evtchn`: event channels.
    Evtchn,
    /// `/dev/xen/xenbus`: the xenstore wire protocol.
    Xenbus,
}

impl Device {
    /// The device node.
    pub fn path(self) -> &'static str {
        match self {
            Device::Gntalloc => "/dev/xen/gntalloc",
            Device::Gntdev => "/dev/xen/gntdev",
            Device::Evtchn => "/dev/xen/evtchn",
            Device::Xenbus => "/dev/xen/xenbus",
        }
    }

    /// The kernel module that provides it.
    pub fn module(self) -> &'static str {
        match self {
            Device::Gntalloc => "xen-gntalloc",
            Device::Gntdev => "xen-gntdev",
            Device::Evtchn => "xen-evtchn",
            Device::Xenbus => "xenfs (or xen-xenbus)",
        }
    }
}

impl Device {
    /// The short name used in messages (`gntdev`).
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Gntalloc => "gntalloc",
            Device::Gntdev => "gntdev",
            Device::Evtchn => "evtchn",
            Device::Xenbus => "xenbus",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call on a Linux Xen device failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device node does not exist or cannot be opened as a device: this is not a Xen
    /// domain, or the kernel module is not loaded.
    #[error(
        "{device}: {path} is not available ({errno}): not running in a Xen domain, or the {module} module is not loaded",
        path = device.path(), module = device.module()
    )]
    DeviceAbsent {
        /// The device.
        device: Device,
        /// Why `open` failed.
        errno: Errno,
    },
    /// The kernel refused a call.
    #[error("{device} {call}: {errno}")]
    Kernel {
        /// The device.
        device: Device,
        /// The call (`MAP_GRANT_REF`, `mmap`, `read`, ...).
        call: &'static str,
        /// What the kernel answered.
        errno: Errno,
    },
    /// An argument was refused before reaching the kernel.
    #[error("{device} {call}: invalid argument: {what}")]
    InvalidArgument {
        /// The device.
        device: Device,
        /// The call.
        call: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A xenstore request that the wire protocol cannot carry (an empty or over-long path, a
    /// payload over `XENSTORE_PAYLOAD_MAX`, a token with a NUL); nothing was sent.
    #[error("xenbus {call}: invalid argument: {error}")]
    BadRequest {
        /// The request (`XS_WRITE`).
        call: &'static str,
        /// What is wrong with it.
        error: CodecError,
    },
    /// Xenstore answered a request with an error (`XS_ERROR`).
    #[error("xenbus {call}: xenstore error {errno}")]
    Xenstore {
        /// The request (`XS_READ`, `XS_TRANSACTION_END`, ...).
        call: &'static str,
        /// The error xenstore named (`EAGAIN` for a transaction conflict).
        errno: XsErrno,
    },
    /// Xenstore (or the kernel on its behalf) sent something the wire protocol does not allow.
    /// The connection is then unusable: the client stays broken and refuses further calls.
    #[error("xenbus {call}: protocol error: {error}")]
    Protocol {
        /// The request being answered.
        call: &'static str,
        /// What was wrong with the reply.
        error: CodecError,
    },
    /// No answer in time.
    #[error("{device} {call}: no answer within {seconds} s")]
    Timeout {
        /// The device.
        device: Device,
        /// The call.
        call: &'static str,
        /// The limit.
        seconds: u64,
    },
}

impl Error {
    /// The kernel's errno, for [`Error::Kernel`] and [`Error::DeviceAbsent`].
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } | Error::DeviceAbsent { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True for a xenstore transaction that must be retried (`EAGAIN`).
    pub fn is_xenstore_eagain(&self) -> bool {
        matches!(
            self,
            Error::Xenstore {
                errno: XsErrno::EAGAIN,
                ..
            }
        )
    }

    /// The error as [`xen_xenbus::Xenstore`] reports it (see the table on [`crate::Xenbus`]'s
    /// implementation of that trait): xenstored's error strings keep their name, kernel
    /// errnos keep theirs where the trait has it, everything that means "the connection or
    /// the daemon failed" is `EIO`.
    pub fn xenstore_errno(&self) -> xen_xenbus::Errno {
        use xen_xenbus::Errno as X;
        match self {
            Error::Xenstore { errno, .. } => X::from_wire(errno.name().as_bytes()),
            Error::Kernel { errno, .. } => match errno.0 {
                libc::EINVAL => X::Inval,
                libc::EACCES => X::Acces,
                libc::EEXIST => X::Exist,
                libc::EISDIR => X::IsDir,
                // The xenbus device's answer to a request in an unknown transaction.
                libc::ENOENT | libc::ESRCH => X::NoEnt,
                libc::ENOMEM => X::NoMem,
                libc::ENOSPC => X::NoSpc,
                libc::ENOTEMPTY => X::NotEmpty,
                libc::ENOSYS => X::NoSys,
                libc::EROFS => X::RoFs,
                libc::EBUSY => X::Busy,
                libc::EISCONN => X::IsConn,
                libc::E2BIG | libc::EFBIG => X::TooBig,
                libc::EPERM => X::Perm,
                // EIO, EPIPE (the stream ended), EFAULT, and EAGAIN: a kernel EAGAIN is not a
                // transaction conflict and must not make `transact` retry.
                _ => X::Io,
            },
            Error::BadRequest { error, .. } => match error {
                CodecError::PathTooLong { .. } | CodecError::PayloadTooLong { .. } => X::TooBig,
                _ => X::Inval,
            },
            Error::InvalidArgument { .. } => X::Inval,
            Error::DeviceAbsent { .. } | Error::Timeout { .. } | Error::Protocol { .. } => X::Io,
        }
    }

    /// Maps a failed `open` of `device`: a missing node means "not a Xen domain".
    pub(crate) fn open(device: Device, e: &std::io::Error) -> Error {
        let errno = Errno(e.raw_os_error().unwrap_or(0));
        match errno.0 {
            libc::ENOENT | libc::ENODEV | libc::ENXIO | libc::ENOTDIR => {
                Error::DeviceAbsent { device, errno }
            }
            _ => Error::Kernel {
                device,
                call: "open",
                errno,
            },
        }
    }

    /// A kernel error of `device`'s `call`, as a closure for `map_err`.
    pub(crate) fn kernel(device: Device, call: &'static str) -> impl Fn(Errno) -> Error {
        move |errno| Error::Kernel {
            device,
            call,
            errno,
        }
    }
}

impl From<Error> for GrantError {
    /// The grant traits carry platform failures as typed values: a kernel error keeps its
    /// device, call and errno (`gntdev mmap: EINVAL (22)`).
    fn from(e: Error) -> GrantError {
        let os = |device: Device, call: &'static str, errno: Errno| GrantError::Os {
            device: device.as_str(),
            call,
            errno: errno.0,
            name: errno.name().unwrap_or("errno"),
        };
        match e {
            Error::Kernel {
                device,
                call,
                errno,
            } => os(device, call, errno),
            Error::DeviceAbsent { device, errno } => os(device, "open", errno),
            Error::InvalidArgument { device, call, .. } => GrantError::InvalidArgument {
                device: device.as_str(),
                call,
            },
            Error::Timeout { .. } => GrantError::Platform("timed out"),
            Error::Xenstore { .. } | Error::Protocol { .. } | Error::BadRequest { .. } => {
                GrantError::Platform("xenstore failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_name_device_call_and_errno() {
        let e = Error::kernel(Device::Gntdev, "MAP_GRANT_REF")(Errno(libc::EINVAL));
        assert_eq!(e.to_string(), "gntdev MAP_GRANT_REF: EINVAL");
        assert_eq!(e.errno(), Some(Errno(libc::EINVAL)));
        let e = Error::kernel(Device::Evtchn, "NOTIFY")(Errno(4095));
        assert_eq!(e.to_string(), "evtchn NOTIFY: errno 4095");
    }

    #[test]
    fn missing_nodes_mean_not_xen() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = Error::open(Device::Gntalloc, &io);
        assert!(matches!(
            e,
            Error::DeviceAbsent {
                device: Device::Gntalloc,
                ..
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.contains("/dev/xen/gntalloc is not available (ENOENT)"),
            "{msg}"
        );
        assert!(msg.contains("not running in a Xen domain"), "{msg}");
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            Error::open(Device::Evtchn, &io).to_string(),
            "evtchn open: EACCES"
        );
    }

    #[test]
    fn grant_errors_keep_device_call_and_errno() {
        let a: GrantError = Error::kernel(Device::Gntdev, "mmap")(Errno(libc::EINVAL)).into();
        assert_eq!(
            a,
            GrantError::Os {
                device: "gntdev",
                call: "mmap",
                errno: libc::EINVAL,
                name: "EINVAL"
            }
        );
        assert_eq!(a.to_string(), "gntdev mmap: EINVAL (22)");
        assert_eq!(a.errno(), Some(libc::EINVAL));
        let odd: GrantError = Error::kernel(Device::Gntdev, "mmap")(Errno(4095)).into();
        assert_eq!(odd.to_string(), "gntdev mmap: errno (4095)");
        let c: GrantError = Error::InvalidArgument {
            device: Device::Gntalloc,
            call: "SET_UNMAP_NOTIFY",
            what: "offset 9999 past the end".into(),
        }
        .into();
        assert_eq!(
            c,
            GrantError::InvalidArgument {
                device: "gntalloc",
                call: "SET_UNMAP_NOTIFY"
            }
        );
    }

    #[test]
    fn xenstore_errors_map_to_the_trait_errno_by_name() {
        use xen_xenbus::Errno as X;
        for e in XsErrno::ALL {
            let got = Error::Xenstore {
                call: "XS_READ",
                errno: e,
            }
            .xenstore_errno();
            assert_eq!(got.name(), e.name(), "{e}");
        }
        let k = |n| Error::kernel(Device::Xenbus, "write")(Errno(n)).xenstore_errno();
        assert_eq!(k(libc::ESRCH), X::NoEnt, "unknown transaction");
        assert_eq!(k(libc::EINVAL), X::Inval);
        assert_eq!(k(libc::E2BIG), X::TooBig);
        assert_eq!(k(libc::EFBIG), X::TooBig);
        assert_eq!(k(libc::EPIPE), X::Io);
        assert_eq!(k(libc::EAGAIN), X::Io, "never a transaction conflict");
        let bad = |error| {
            Error::BadRequest {
                call: "XS_WRITE",
                error,
            }
            .xenstore_errno()
        };
        assert_eq!(bad(CodecError::PayloadTooLong { len: 5000 }), X::TooBig);
        assert_eq!(bad(CodecError::PathTooLong { len: 9, max: 1 }), X::TooBig);
        assert_eq!(bad(CodecError::BadPath), X::Inval);
        let t = Error::Timeout {
            device: Device::Xenbus,
            call: "XS_READ",
            seconds: 1,
        };
        assert_eq!(t.xenstore_errno(), X::Io);
        let p = Error::Protocol {
            call: "XS_READ",
            error: CodecError::NotOk,
        };
        assert_eq!(p.xenstore_errno(), X::Io);
    }

    #[test]
    fn eagain_is_recognised() {
        let e = Error::Xenstore {
            call: "XS_TRANSACTION_END",
            errno: XsErrno::EAGAIN,
        };
        assert!(e.is_xenstore_eagain());
        assert_eq!(
            e.to_string(),
            "xenbus XS_TRANSACTION_END: xenstore error EAGAIN"
        );
        assert!(
            !Error::Xenstore {
                call: "XS_READ",
                errno: XsErrno::ENOENT
            }
            .is_xenstore_eagain()
        );
    }
}
