//! Xen grant tables, safe by construction.
//!
//! A page shared with another domain is *moved* into a [`Granted`] value and comes back only
//! from an [`end_access`](Granted::end_access) that succeeded; a grant that cannot be ended
//! waits in a [`ReclaimQueue`] and is never reused. There is no "is it still mapped?" query.
//! Memory a peer may write is reached only through [`SharedMem`] (atomics and volatile
//! copies), never through Rust references. Read-only and writable grants and mappings are
//! different types.
//!
//! # Layers
//!
//! * [`abi`]: the v1 wire ABI of Xen 4.17's `grant_table.h`, checked against the real headers.
//! * [`shared`]: the shared-memory accessor (loom-backed under `cfg(loom)`).
//! * [`v1`]: the grant-entry protocol, guest half and hypervisor half.
//! * [`Grantor`], [`Granted`], [`ReclaimQueue`]: the granting typestate.
//! * [`GrantTable`]: the `Grantor` for a guest that owns its table.
//! * [`ForeignMapper`], [`ForeignMap`]: the backend side (maps and grant copy).
//! * [`local`]: a hypervisor-less platform for examples and unit tests.
//!
//! # Why a safe program cannot get around the typestate
//!
//! The platform traits [`Grantor`], [`ForeignMapper`] and [`TablePlatform`] are `unsafe trait`s
//! whose raw operations (make and end a grant, map and unmap, reach the grant table, a
//! writable view of a mapping) are `unsafe fn`s with written contracts. Drivers are generic
//! over the traits but cannot implement them (that takes `unsafe impl`) nor call the raw
//! operations (that takes `unsafe`). So, in safe code:
//!
//! * a page comes back only from [`Granted::end_access`] or [`Grantor::reclaim`], after the
//!   platform's end-access succeeded: no raw grant record exists outside a [`Granted`] or a
//!   [`ReclaimQueue`], and neither hands one out (invariants 1 and 2);
//! * the grant table cannot be written: its view comes only from the `unsafe`
//!   [`TablePlatform::table`], so no pin can be cleared and no entry written for a ref the
//!   allocator did not hand out;
//! * a read-only grant or mapping has no writable view: [`ForeignMapper::mapping_mem`] is
//!   read-only, and only a `ForeignMap<_, Writable>` reaches the writable one (invariant 3);
//! * a panic in a platform call never drops a live grant: the typestate holds it where the
//!   unwind returns it to the reclaim queue (`tests/unwind.rs`);
//! * a grant reference is owned by one allocator, whose 64-bit id never wraps ([`refs`]).
//!
//! The platform crates (`xen-sim`, `xen-linux`, this crate's [`GrantTable`] and [`local`])
//! are the only implementations, each with the `// SAFETY:` argument of its contract.
//!
//! # Platforms
//!
//! Drivers are generic over [`Grantor`] (frontends) and [`ForeignMapper`] (backends). Three
//! platforms fit them:
//!
//! * **Simulator** (`xen-sim`): each simulated domain has a grant table in host memory and
//!   implements [`TablePlatform`], so its grants are a [`GrantTable`]; the host runs Xen's
//!   `_set_status_v1` (`v1::hypervisor`, public with the `hypervisor` feature) on that table when another domain maps or copies.
//!   `Ended` is the page itself.
//! * **Unikernel with hypercalls**: the guest sets up its table with `GNTTABOP_setup_table`,
//!   maps its frames and implements [`TablePlatform`] over them (pages are its own memory,
//!   frames its GFNs); the same [`GrantTable`] writes entries and ends grants with the
//!   compare-and-swap, and `Ended` is the page. Its [`ForeignMapper`] issues
//!   `GNTTABOP_map_grant_ref`, `unmap_grant_ref` and `copy` hypercalls.
//! * **Linux userspace** (`/dev/xen/gntalloc`, `/dev/xen/gntdev`): the kernel owns the table.
//!   A grant is created together with its page (`IOCTL_GNTALLOC_ALLOC_GREF` + `mmap`), so that
//!   platform's `grant_page` copies the private page into the fresh gntalloc page; ending a
//!   grant (`DEALLOC_GREF` + `munmap`) is deferred by the kernel until the peer unmaps, and
//!   userspace cannot observe it. So its `try_end` always succeeds and its `Ended` is a
//!   `Released` token, not a page: giving a grant back consumes its memory and the type system
//!   offers no way to touch it again. Its [`ForeignMapper`] is gntdev's
//!   `MAP_GRANT_REF` + `mmap` / `munmap` + `UNMAP_GRANT_REF`, and `GRANT_COPY`.
//!
//! # Example
//!
//! ```
//! use xen_gnttab::{Domid, Granted, Grantor, Writable, local::LocalTable};
//!
//! let table = LocalTable::new_local(Domid(1), 64);
//! let granted = Granted::<_, Writable>::new(&table, table.alloc_page()?, Domid(0))
//!     .map_err(|(_, e)| e)?;
//! // The peer maps it (here: a test pin, as Xen's map would set GTF_reading/GTF_writing).
//! table.peer_pin(granted.gref(), Domid(0), false).unwrap();
//! // Ending fails while it is mapped; the grant comes back, not the page.
//! let busy = granted.end_access().unwrap_err();
//! table.peer_unpin(busy.gref());
//! let page = busy.retry().expect("unmapped: the end succeeds");
//! # let _ = page;
//! # Ok::<(), xen_gnttab::GrantError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi;
pub mod access;
pub mod error;
pub mod foreign;
pub mod grant;
pub mod local;
pub mod refs;
pub mod shared;
pub mod table;
pub mod v1;

pub use abi::{Domid, Frame, GntStatus, GrantHandle, GrantRef, GtfFlags, PAGE_SIZE};
pub use access::{Access, ReadOnly, Writable};
pub use error::GrantError;
pub use foreign::{ForeignMap, ForeignMapper, ForeignRef};
pub use grant::{
    Granted, GrantedRo, GrantedRw, Grantor, Page, ReclaimQueue, ReclaimStats, Reclaimed, StillInUse,
};
pub use refs::{OwnedRef, RefAllocator};
pub use shared::{SharedMem, SharedRegion, SharedSlots, SlotLayout};
pub use table::{GrantTable, TableGrant, TablePlatform};
