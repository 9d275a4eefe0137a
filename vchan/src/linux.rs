//! [`UnmapNotify`] on Linux (feature `linux`): the kernel clears our live byte and signals
//! the peer when this process dies with the shared page granted (`gntalloc`) or mapped
//! (`gntdev`), exactly as libxenvchan arms it.

use crate::{UnmapNotify, VchanError};
use xen_gnttab::{ForeignRef, GrantRef, SharedMem, Writable};
use xen_linux::{EvtchnPort, Gntalloc, Gntdev};
use xen_xenbus::Port;

/// What the kernel does: clear the live byte, then signal the channel's port.
fn action(port: Port) -> xen_linux::UnmapNotify {
    xen_linux::UnmapNotify {
        clear_byte: true,
        event: Some(EvtchnPort(port.0)),
    }
}

/// The Linux [`UnmapNotify`]: `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY` on a server's grant of the
/// shared page, `IOCTL_GNTDEV_SET_UNMAP_NOTIFY` on a client's mapping of it. Give it the
/// same device handle (a clone) that the channel grants or maps with.
#[derive(Clone, Debug)]
pub enum LinuxUnmapNotify {
    /// A server: grants come from this gntalloc handle.
    Server(Gntalloc),
    /// A client: maps come from this gntdev handle.
    Client(Gntdev),
}

/// The platform refused, or the handle is the wrong kind for the side.
fn refused(e: xen_linux::Error) -> VchanError {
    VchanError::Grant(e.into())
}

const WRONG_SIDE: &str = "unmap notify: a gntalloc handle arms grants, a gntdev handle arms maps";

impl UnmapNotify for LinuxUnmapNotify {
    fn arm_grant(
        &self,
        gref: GrantRef,
        _page: SharedMem<'_, Writable>,
        live_offset: usize,
        port: Port,
    ) -> Result<(), VchanError> {
        match self {
            LinuxUnmapNotify::Server(g) => g
                .set_unmap_notify_gref(gref, live_offset, action(port))
                .map_err(refused),
            LinuxUnmapNotify::Client(_) => Err(VchanError::Grant(
                xen_gnttab::GrantError::Platform(WRONG_SIDE),
            )),
        }
    }

    fn arm_map(
        &self,
        _target: ForeignRef,
        page: SharedMem<'_, Writable>,
        live_offset: usize,
        port: Port,
    ) -> Result<(), VchanError> {
        match self {
            LinuxUnmapNotify::Client(d) => d
                .set_unmap_notify_at(page, live_offset, action(port))
                .map_err(refused),
            LinuxUnmapNotify::Server(_) => Err(VchanError::Grant(
                xen_gnttab::GrantError::Platform(WRONG_SIDE),
            )),
        }
    }
}
