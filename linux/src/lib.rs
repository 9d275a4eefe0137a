//! The xen-rs platform over Linux's userspace Xen devices, for programs in a real Xen domain.
//!
//! | device | type | what |
//! |---|---|---|
//! | `/dev/xen/gntalloc` | [`Gntalloc`] | the [`Grantor`](xen_gnttab::Grantor): grants pages to other domains |
//! | `/dev/xen/gntdev` | [`Gntdev`] | the [`ForeignMapper`](xen_gnttab::ForeignMapper): maps and copies other domains' grants |
//! | `/dev/xen/evtchn` | [`Evtchn`] | event channels: bind, notify, wait, unmask, unbind; [`EventChannels`](xen_xenbus::EventChannels) |
//! | `/dev/xen/xenbus` | [`Xenbus`] | xenstore: read, write, rm, directory, permissions, watches, transactions; [`Xenstore`](xen_xenbus::Xenstore) |
//!
//! No libxen library is used: the devices are driven with their ioctls, whose structures are
//! checked against Xen's headers by `cargo xtask abi`, and xenstore with the wire codec of
//! [`xs_wire`]. Every kernel failure is an [`Error`] that names the device and the call
//! (`gntdev MAP_GRANT_REF: EINVAL`); outside a Xen domain the constructors fail with
//! [`Error::DeviceAbsent`].
//!
//! # The `xen-xenbus` traits
//!
//! [`Xenbus`] implements [`xen_xenbus::Xenstore`] and [`Evtchn`] implements
//! [`xen_xenbus::EventChannels`], so drivers and the generic XenbusState handshake
//! ([`xen_xenbus::Frontend`], [`xen_xenbus::Backend`]) run here unchanged:
//!
//! | trait call | on Linux |
//! |---|---|
//! | `Xenstore::read`, `write`, `mkdir`, `rm`, `directory`, `get_perms`, `set_perms`, `transaction_start`/`end`, `watch`, `unwatch` | one `xsd_sockmsg` request written to `/dev/xen/xenbus` ([`xs_wire`]), its reply read back; watch events arriving meanwhile are queued apart from replies |
//! | `Xenstore::poll_watch`, `wait_watch` | the queue, then `poll(2)` on the fd with the timeout |
//! | `Xenstore::now` | `CLOCK_MONOTONIC` ([`std::time::Instant`]) |
//! | `Xenstore::domid` | the `domid` node, read once ([`Xenbus::own_domid`], [`Xenbus::set_domid`]) |
//! | `EventChannels::alloc_unbound`, `bind_interdomain`, `notify`, `unbind` | `IOCTL_EVTCHN_BIND_UNBOUND_PORT`, `BIND_INTERDOMAIN`, `NOTIFY`, `UNBIND` |
//! | `EventChannels::poll`, `wait` | `read()` of fired ports (non-blocking fd; extra ports queued in the handle), `poll(2)` with the timeout |
//! | `EventChannels::unmask` | `write()` of the port: the kernel masks a port when it fires, the trait's contract |
//!
//! Errors keep their meaning: xenstored's error strings become the trait's
//! [`Errno`](xen_xenbus::Errno) of the same name (`"EAGAIN"` makes
//! [`transact`](xen_xenbus::transact) retry); kernel errnos map by name, except that the
//! device's `ESRCH` (unknown transaction) is `ENOENT` and a kernel `EAGAIN` is `EIO`, never a
//! transaction conflict; timeouts and protocol violations are `EIO`
//! ([`Error::xenstore_errno`]). Event-channel errnos become the typed
//! [`EvtchnError`](xen_xenbus::EvtchnError) cases, or `EvtchnError::Os` with call and errno
//! (see the table on [`Evtchn`]'s implementation).
//!
//! # Granting on Linux
//!
//! The kernel owns the grant table, so a grant is created together with its page and its end
//! is deferred by the kernel until the peer unmaps. [`Gntalloc`]'s `Ended` is therefore a
//! [`Released`] token, not a page: giving a grant back consumes its memory (see
//! [`gntalloc`]).
//!
//! ```no_run
//! use xen_gnttab::{ForeignMap, ForeignRef, Granted, Grantor, Page, ReadOnly};
//! use xen_linux::{Gntalloc, Gntdev, Xenbus};
//!
//! let me = Xenbus::open()?.own_domid()?;
//! let gntalloc = Gntalloc::open(me)?;
//! let page = gntalloc.alloc_page()?;
//! page.mem().write_bytes(0, b"hello");
//! let granted = Granted::<_, ReadOnly>::new(&gntalloc, page, me).map_err(|(_, e)| e)?;
//!
//! // Usually another domain or process: map the grant read-only.
//! let gntdev = Gntdev::open()?;
//! let map = ForeignMap::<_, ReadOnly>::map(&gntdev, ForeignRef { domid: me, gref: granted.gref() })?;
//! let mut hello = [0u8; 5];
//! map.mem().read_bytes(0, &mut hello);
//! assert_eq!(&hello, b"hello");
//!
//! // Giving the grant back consumes it: only a token comes back.
//! let _released = granted.end_access().expect("gntalloc ends always succeed");
//! map.unmap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Unsafe code
//!
//! All of it is in one private module (`sys`): `ioctl`, `mmap`, `munmap` and `poll`, each
//! block with its `// SAFETY:` argument. Mapped memory is reached only through
//! [`SharedMem`](xen_gnttab::SharedMem).
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("xen-linux drives Linux's /dev/xen devices and builds only for Linux");

pub mod error;
pub mod evtchn;
pub mod gntalloc;
pub mod gntdev;
mod sys;
pub mod xenbus;
pub mod xs_wire;

pub use error::{Device, Errno, Error};
pub use evtchn::{Evtchn, EvtchnPort};
pub use gntalloc::{Gntalloc, GntallocGrant, GrantBlock, PrivatePage, Released};
pub use gntdev::{Gntdev, GntdevMapping, RawMapping};
pub use xenbus::{TxId, Xenbus};
pub use xs_wire::{WatchEvent, XsErrno};

/// What the kernel does when a shared page goes away (`SET_UNMAP_NOTIFY`): on the granting
/// side when the grant is freed, on the mapping side when the mapping is unmapped, including
/// when the process dies. This is how libxenvchan's peers learn that the other end is gone.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct UnmapNotify {
    /// Clear the byte at the given offset (`UNMAP_NOTIFY_CLEAR_BYTE`).
    pub clear_byte: bool,
    /// Signal this local event channel (`UNMAP_NOTIFY_SEND_EVENT`).
    pub event: Option<EvtchnPort>,
}

impl UnmapNotify {
    /// The `action` bits.
    fn action(self) -> u32 {
        (if self.clear_byte {
            sys::UNMAP_NOTIFY_CLEAR_BYTE
        } else {
            0
        }) | (if self.event.is_some() {
            sys::UNMAP_NOTIFY_SEND_EVENT
        } else {
            0
        })
    }

    /// The event channel, 0 if none.
    fn port(self) -> u32 {
        self.event.map_or(0, |p| p.0)
    }
}

/// The ABI of the devices, for `cargo xtask abi`: the ioctl numbers and structures.
pub mod abi {
    pub use crate::sys::{
        COPY_FOREIGN_DOMID_AT, COPY_FOREIGN_OFFSET_AT, EvtchnBindInterdomain,
        EvtchnBindUnboundPort, EvtchnPortArg, GNTALLOC_FLAG_WRITABLE, GNTCOPY_DEST_GREF,
        GNTCOPY_SOURCE_GREF, GntallocAllocGref, GntallocDeallocGref, GntdevGrantCopy,
        GntdevGrantCopySegment, GntdevGrantRef, GntdevMapGrantRef, GntdevUnmapGrantRef,
        IOCTL_EVTCHN_BIND_INTERDOMAIN, IOCTL_EVTCHN_BIND_UNBOUND_PORT, IOCTL_EVTCHN_NOTIFY,
        IOCTL_EVTCHN_UNBIND, IOCTL_GNTALLOC_ALLOC_GREF, IOCTL_GNTALLOC_DEALLOC_GREF,
        IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, IOCTL_GNTDEV_GRANT_COPY, IOCTL_GNTDEV_MAP_GRANT_REF,
        IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IOCTL_GNTDEV_UNMAP_GRANT_REF, UNMAP_NOTIFY_CLEAR_BYTE,
        UNMAP_NOTIFY_SEND_EVENT, UnmapNotify as UnmapNotifyArg, ioc_none,
    };
}

/// Opens a device node read-write (close-on-exec; non-blocking if asked). A missing node is
/// [`Error::DeviceAbsent`].
fn open_device(
    device: Device,
    path: &std::path::Path,
    nonblocking: bool,
) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true);
    if nonblocking {
        opts.custom_flags(libc::O_NONBLOCK);
    }
    opts.open(path).map_err(|e| Error::open(device, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmap_notify_actions() {
        assert_eq!(UnmapNotify::default().action(), 0);
        let n = UnmapNotify {
            clear_byte: true,
            event: Some(EvtchnPort(7)),
        };
        assert_eq!((n.action(), n.port()), (3, 7));
        let n = UnmapNotify {
            clear_byte: false,
            event: Some(EvtchnPort(7)),
        };
        assert_eq!(n.action(), 2);
    }

    #[test]
    fn this_host_is_either_xen_or_says_it_is_not() {
        // On a Xen domain with the modules loaded every device opens; elsewhere each one
        // fails with DeviceAbsent naming its node. Nothing else is acceptable.
        let results: Vec<Result<(), Error>> = vec![
            Gntalloc::open(xen_gnttab::Domid(0)).map(drop),
            Gntdev::open().map(drop),
            Evtchn::open().map(drop),
            Xenbus::open().map(drop),
        ];
        for r in results {
            match r {
                Ok(()) => {}
                Err(Error::DeviceAbsent { device, .. }) => {
                    assert!(!std::path::Path::new(device.path()).exists())
                }
                Err(e) => panic!("unexpected: {e}"),
            }
        }
    }
}
