//! Xenstore, event channels and the XenbusState handshake: the platform traits a Xen PV
//! driver uses to find its peer and to signal it, and the untrusted-value parsing and
//! handshake logic every driver shares.
//!
//! * [`Xenstore`]: read, write, mkdir, rm, directory, permissions, watches with tokens
//!   (pollable and waitable with a timeout), transactions, and the [`transact`] retry helper
//!   for `EAGAIN`. [`XenstoreExt`] adds typed readers ([`parse`]) whose every failure is a
//!   [`XenbusError`] naming the path.
//! * [`EventChannels`]: allocate an unbound port, bind an interdomain port, notify, unbind,
//!   poll, wait with a timeout, and `/dev/xen/evtchn`'s unmask semantics (a fired port stays
//!   masked until re-armed). [`PortWord`] is the pending/mask protocol of one port;
//!   [`Damper`] damps event storms (XSA-391).
//! * [`XenbusState`] and the handshake ([`handshake`]): pure [`FrontendMachine`] and
//!   [`BackendMachine`] (netfront skips Initialised, blkfront uses it) and runners
//!   [`Frontend`] and [`Backend`] over any [`Xenstore`], with bounded waits.
//!
//! Everything a peer writes is untrusted: values are length-bounded before they are parsed,
//! only canonical decimal numbers are accepted, and a peer that stalls or vanishes ends a
//! wait with an error, never a hang. There is no `unsafe` code here.
//!
//! # Platforms
//!
//! The traits take a [`core::time::Duration`] for every wait and leave the clock to the
//! platform ([`Xenstore::now`]), so they fit `no_std`.
//!
//! * **Simulator** (`xen-sim`): a host-wide xenstore tree with per-node permissions, quotas,
//!   watches and transactions, and per-domain event-channel port tables whose pending/mask
//!   words are [`PortWord`]s. Each simulated connection is a handle to that state; waits are
//!   `std` condition variables with a timeout.
//! * **Linux userspace**: [`Xenstore`] over `/dev/xen/xenbus`, one `xsd_sockmsg` header
//!   (`type`, `req_id`, `tx_id`, `len`) plus at most 4096 bytes of payload per request:
//!   `XS_READ` 2, `XS_WATCH` 4, `XS_UNWATCH` 5, `XS_TRANSACTION_START` 6 (reply: the
//!   [`Tx`] id), `XS_TRANSACTION_END` 7 (`"T"`/`"F"`; an `XS_ERROR` `"EAGAIN"` maps to
//!   [`Errno::Again`] via [`Errno::from_wire`]), `XS_WRITE` 11, `XS_MKDIR` 12, `XS_RM` 13,
//!   `XS_SET_PERMS` 14 ([`Perms::to_wire`]), `XS_GET_PERMS` 3 ([`Perms::from_wire`]),
//!   `XS_DIRECTORY` 1. `XS_WATCH_EVENT` 15 messages arrive interleaved with replies and are
//!   queued for [`Xenstore::poll_watch`]; [`Xenstore::wait_watch`] is `poll(2)` on the fd
//!   with the timeout, [`Xenstore::now`] is `CLOCK_MONOTONIC`. [`EventChannels`] is
//!   `/dev/xen/evtchn`: `IOCTL_EVTCHN_BIND_UNBOUND_PORT`, `BIND_INTERDOMAIN`, `NOTIFY`,
//!   `UNBIND`; `read()` of `u32` ports is [`EventChannels::poll`] (non-blocking fd) or
//!   [`EventChannels::wait`] (`poll(2)` with the timeout), and writing a port back is
//!   [`EventChannels::unmask`]: the kernel masks a port when it fires, exactly the contract
//!   here. `xen-linux`'s `Xenbus` and `Evtchn` implement both traits this way, and
//!   `cargo xtask realxen` runs the handshake over them on real Xen.
//! * **Unikernel (hypercalls)**: [`Xenstore`] speaks the same `xsd_sockmsg` protocol over the
//!   xenstore shared ring (`xenstore_domain_interface`, the page and event channel from
//!   `start_info`), demultiplexing replies by `req_id` and watch events by token; waits
//!   block the vCPU (`SCHEDOP_block`) until an event or a timer (`VCPUOP_set_singleshot_timer`)
//!   fires, and the clock is the `vcpu_time_info` of `shared_info`. [`EventChannels`] is
//!   `HYPERVISOR_event_channel_op` (`EVTCHNOP_alloc_unbound`, `bind_interdomain`, `send`,
//!   `close`) with `shared_info`'s `evtchn_pending`/`evtchn_mask` bitmaps: the upcall masks
//!   each pending port it finds and queues it ([`PortWord::raise`]), and unmask clears the
//!   mask and re-checks pending ([`PortWord::unmask`], `EVTCHNOP_unmask`).
//!
//! # Example
//!
//! A frontend's side of the handshake, over any platform (here generic; `xen-sim`'s tests
//! run it against a simulated backend):
//!
//! ```
//! use core::time::Duration;
//! use xen_xenbus::{DeviceLink, Frontend, FrontendKind, HandshakeError, Xenstore, XenstoreExt};
//! use xen_gnttab::GrantRef;
//! use xen_xenbus::evtchn::Port;
//!
//! fn connect_vif<X: Xenstore>(xs: X, ring: GrantRef, port: Port) -> Result<Frontend<X>, HandshakeError> {
//!     let link = DeviceLink::frontend(&xs, "device/vif/0")?;
//!     let mut front = Frontend::new(xs, link, FrontendKind::SkipsInitialised)?;
//!     front.connect(Duration::from_secs(5), |xs, tx, dir| {
//!         xs.write_uint(tx, &format!("{dir}/tx-ring-ref"), ring.0.into())?;
//!         xs.write_uint(tx, &format!("{dir}/event-channel"), port.0.into())
//!     })?;
//!     Ok(front)
//! }
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod evtchn;
pub mod handshake;
pub mod parse;
pub mod path;
pub mod state;
pub mod xenstore;

pub use error::{Errno, EvtchnError, HandshakeError, ParseErrorKind, XenbusError};
pub use evtchn::{Damper, Delivery, EventChannels, Port, PortWord};
pub use handshake::{
    Backend, BackendMachine, DeviceLink, Frontend, FrontendKind, FrontendMachine, Phase,
};
pub use state::XenbusState;
pub use xen_gnttab::Domid;
pub use xenstore::{Perm, Perms, Tx, WatchEvent, Xenstore, XenstoreExt, transact};
