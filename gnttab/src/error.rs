//! Error types.

use crate::abi::{Domid, GntStatus, GrantRef};

/// Why a grant, map, unmap or copy failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum GrantError {
    /// Every grant reference is in use (or waiting in the reclaim queue).
    #[error("no free grant references")]
    NoFreeRefs,
    /// The platform could not allocate a page.
    #[error("out of pages")]
    OutOfPages,
    /// The frame number does not fit a v1 grant entry (32 bits).
    #[error("frame {0:#x} does not fit a v1 grant entry")]
    FrameTooLarge(u64),
    /// The peer domain id is not a real domain.
    #[error("{0} is not a domain that can be granted to")]
    InvalidDomain(Domid),
    /// The hypervisor refused, with this `GNTST_*` status.
    #[error("hypervisor refused {op} of {gref:?} from {domid}: {status}")]
    Hypervisor {
        /// The operation (`map`, `unmap`, `copy`).
        op: &'static str,
        /// The granting domain.
        domid: Domid,
        /// The grant reference.
        gref: GrantRef,
        /// What Xen answered.
        status: GntStatus,
    },
    /// A copy whose offset and length do not fit a page.
    #[error("copy of {len} bytes at offset {offset} crosses a page boundary")]
    CopyCrossesPage {
        /// Offset within the page.
        offset: usize,
        /// Length of the copy.
        len: usize,
    },
    /// A call into the platform's kernel interface failed (on Linux: an `open`, `ioctl` or
    /// `mmap` of a Xen device).
    #[error("{device} {call}: {name} ({errno})")]
    Os {
        /// The device or interface (`gntdev`, `gntalloc`).
        device: &'static str,
        /// The call (`MAP_GRANT_REF`, `mmap`).
        call: &'static str,
        /// The OS error number.
        errno: i32,
        /// Its symbolic name (`EINVAL`), or `"errno"` when the platform does not know it.
        name: &'static str,
    },
    /// The platform refused an argument before calling the kernel.
    #[error("{device} {call}: invalid argument")]
    InvalidArgument {
        /// The device or interface.
        device: &'static str,
        /// The call.
        call: &'static str,
    },
    /// The platform failed in another way; the text says how.
    #[error("platform error: {0}")]
    Platform(&'static str),
}

impl GrantError {
    /// The `GNTST_*` status if the hypervisor refused.
    pub fn status(&self) -> Option<GntStatus> {
        match self {
            GrantError::Hypervisor { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The OS error number if a kernel call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            GrantError::Os { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
