//! A simulated Xen host, faithful where drivers can tell.
//!
//! A [`Host`] holds domains. Each [`Domain`] has page memory with frame numbers and a v1 grant
//! table in host memory that the domain writes through the same [`xen_gnttab::GrantTable`]
//! a unikernel would use. When another domain maps, unmaps or copies a grant, the host runs
//! Xen's own logic on that table: `_set_status_v1` (type and domid checks, `GTF_reading` and
//! `GTF_writing` set by a compare-and-swap, writable pins of read-only grants refused, at most
//! five tries on an unstable entry) and `reduce_status_for_pin` when pins go. So an end-access
//! in the simulator races a map exactly as it does on Xen.
//!
//! A hostile peer is a first-class citizen: [`Domain::hostile`] maps grants and keeps them,
//! and can scribble on whatever it mapped writable.
//!
//! Domains are threads in one process today; the host's state sits behind [`Host`] and
//! [`Domain`] handles only, so a multi-process host can replace the inside later.
//!
//! ```
//! use xen_gnttab::{ForeignMap, ForeignRef, Granted, Grantor, ReadOnly};
//! use xen_sim::Host;
//!
//! let host = Host::new();
//! let front = host.create_domain("front");
//! let back = host.create_domain("back");
//! let g = Granted::<_, ReadOnly>::new(front.grants(), front.grants().alloc_page()?, back.domid())
//!     .map_err(|(_, e)| e)?;
//! g.mem().write_bytes(0, b"ping");
//! let map = ForeignMap::<_, ReadOnly>::map(back.mapper(), ForeignRef { domid: front.domid(), gref: g.gref() })?;
//! let mut buf = [0u8; 4];
//! map.mem().read_bytes(0, &mut buf);
//! assert_eq!(&buf, b"ping");
//! let g = g.end_access().unwrap_err().into_granted(); // busy: still mapped
//! drop(map);
//! let _page = g.end_access().expect("unmapped, so the end succeeds");
//! # Ok::<(), xen_gnttab::GrantError>(())
//! ```
#![deny(unsafe_code)]

mod domain;
pub mod evtchn;
mod host;
pub mod hostile;
pub mod toolstack;
pub mod xenstore;

pub use domain::{Domain, DomainStats, SimGrants, SimMapper, SimMapping, SimPage, SimPlatform};
pub use evtchn::{PortStats, SimEvtchn};
pub use host::Host;
pub use hostile::{HeldMapping, Hostile};
pub use xenstore::SimXenstore;

/// Grant-table entries each simulated domain gets (4 frames, as MirageOS uses).
pub const DEFAULT_GRANT_ENTRIES: u32 = 4 * 512;
