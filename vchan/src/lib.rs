//! A byte channel between two Xen domains, compatible with `libxenvchan`.
//!
//! A **server** grants a shared page (and, for large rings, ring pages) to one client domain,
//! publishes `ring-ref` and `event-channel` in xenstore, and waits; the **client** reads them,
//! maps the pages and connects. Then each end writes one ring and reads the other: the
//! *left* ring carries client → server bytes, the *right* ring server → client bytes. The
//! wire format ([`abi`]) is `xen/include/public/io/libxenvchan.h` byte for byte, so either
//! end can talk to `libxenvchan` (and its `vchan-node1`/`xencat` tools).
//!
//! Everything is generic over the platform traits — [`Grantor`](xen_gnttab::Grantor) and
//! [`ForeignMapper`](xen_gnttab::ForeignMapper) for memory,
//! [`EventChannels`](xen_xenbus::EventChannels) and [`Xenstore`](xen_xenbus::Xenstore) —
//! so the same code runs on the simulator (`xen-sim`), on Linux userspace
//! (`/dev/xen/gntalloc`, `gntdev`, `evtchn`, `xenbus`) and on a unikernel.
//!
//! # A hostile peer
//!
//! The peer is untrusted. Stricter than libxenvchan:
//!
//! * our own indices are private and never read back; the ring orders are read once, at
//!   connect, with the grant list;
//! * a peer index more than a ring away from ours, or a live byte the protocol does not
//!   have, puts the channel into a sticky [`Broken`] state: every call then fails, and the
//!   peer is told we are gone;
//! * a grant list that would run into an in-page ring is refused ([`abi::Layout`]);
//! * every blocking call has a deadline ([`Options::timeout`]), and events after which
//!   nothing changed are damped ([`Options::damper`], XSA-391);
//! * closing the server ends its grants, and those the client still maps go to the
//!   grantor's reclaim queue, never back to the allocator (see [`Teardown`]).
//!
//! # Platforms
//!
//! Linux's `gntalloc` and `gntdev` can clear a live byte and signal the port when a process
//! dies with the page mapped (`IOCTL_*_SET_UNMAP_NOTIFY`); libxenvchan arms it on
//! `srv_live` (offset 21) and `cli_live` (offset 20). A platform with that capability
//! implements [`UnmapNotify`] and passes it in the config; without it a crashed peer is
//! noticed by the timeout instead. On Linux, feature `linux` provides it
//! (`LinuxUnmapNotify`) and the `xen-vchan` tool (`xen-vchan server|client`, a vchan bridged
//! to stdin/stdout or a Unix socket, in the spirit of Xen's `vchan-socket-proxy`).
//!
//! # Performance
//!
//! `cargo xtask bench vchan` (one direction, writer and reader threads pinned to the two
//! CPUs of a shared 2-vCPU host, GB/s, median of 5 interleaved rounds; `bulk/C` is the
//! median of per-round ratios, each from runs back to back). Three full runs in a row gave
//! `BENCH vchan-limit` 0.965, 0.913 and 0.957 and `BENCH vchan-socketpair` 2.25, 2.29 and
//! 2.64; this is the third:
//!
//! | ring | write | plain | bulk | C limit | socketpair | pipe | bulk/C | bulk/socketpair |
//! |-----:|------:|------:|-----:|--------:|-----------:|-----:|-------:|----------------:|
//! | 2K   | 64    | 0.71  | 3.13 | 3.65    | 0.06       | 0.15 | 0.99   | 51              |
//! | 2K   | 2K    | 6.19  | 6.94 | 5.82    | 1.35       | 3.74 | 1.22   | 5.1             |
//! | 2K   | 64K   | 6.09  | 6.41 | 5.34    | 6.20       | 1.20 | 1.13   | 1.03            |
//! | 64K  | 64    | 0.61  | 2.72 | 1.73    | 0.05       | 0.14 | 1.57   | 50              |
//! | 64K  | 2K    | 6.66  | 7.71 | 8.01    | 1.51       | 4.08 | 0.96   | 5.1             |
//! | 64K  | 64K   | 6.61  | 6.94 | 6.64    | 6.43       | 1.28 | 1.05   | 1.08            |
//! | 1M   | 64    | 0.88  | 3.44 | 2.67    | 0.06       | 0.14 | 1.47   | 56              |
//! | 1M   | 2K    | 11.7  | 13.2 | 9.01    | 1.33       | 3.83 | 1.39   | 9.9             |
//! | 1M   | 64K   | 13.6  | 13.7 | 12.4    | 5.19       | 1.42 | 1.05   | 2.64            |
//!
//! The C limit is a byte ring with the same two copies and *no notifications*, its two
//! indices in one 24-byte header as `struct vchan_interface` has them. `plain` is
//! `write_all` / `read`, which take the peer's notify request on every call behind a full
//! barrier (libxenvchan's `xen_mb()`; the loom model
//! `send_notify_without_its_fence_loses_a_wakeup` shows the lost wakeup without it): with
//! 64-byte writes that barrier waits for the header's cache line every 64 bytes, and the
//! plain calls stay at 0.2-0.5x the C ring. `bulk` is [`Vchan::write_more`] /
//! [`Vchan::read_more`], which look at the request once per half ring (a plain load; the
//! barrier only when the peer asked) and take it before any wait,
//! re-read the peer's index only when what they knew is used up, and store their own index
//! only every publish lag (a quarter of the smaller ring, at most 1 KiB), so the header's
//! cache line, which holds both ends' indices, moves about once per 9-17 small writes
//! instead of every write. A 64-byte write and read cost 303 instructions together with the
//! plain calls and 327 with the bulk calls plus a flush per write (callgrind,
//! `examples/small_writes`, one thread, where every read must look at the writer's index).
//!
//! # Example
//!
//! A server in one simulated domain and a client in another, each in its own thread:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use xen_sim::Host;
//! use xen_vchan::{ClientConfig, ServerConfig, connect, listen, vchan_path};
//!
//! let host = Host::new();
//! let _dom0 = host.create_domain("dom0");
//! let srv = host.create_domain("server");
//! let cli = host.create_domain("client");
//! let path = vchan_path(srv.domid(), cli.domid(), 1);
//!
//! // Rings of at least 4 KiB each way, rounded as libxenvchan rounds them.
//! let config = ServerConfig::new(path.clone(), 4096, 4096)?;
//! let listener = listen(srv.grants(), srv.evtchn(), srv.xenstore(), cli.domid(), &config)?;
//!
//! let client = std::thread::spawn(move || -> Result<Vec<u8>, xen_vchan::VchanError> {
//!     let config = ClientConfig::new(path).wait(Duration::from_secs(5));
//!     let mut c = connect(cli.mapper(), cli.evtchn(), cli.xenstore(), srv.domid(), &config)?;
//!     c.write_all(b"hello from the client")?;
//!     let mut reply = Vec::new();
//!     c.read_to_end(&mut reply).map_err(|_| xen_vchan::VchanError::TimedOut)?;
//!     Ok(reply)
//! });
//!
//! let mut server = listener.accept(Duration::from_secs(5))?;
//! let mut got = [0u8; 21];
//! server.read_exact(&mut got)?;
//! assert_eq!(&got, b"hello from the client");
//! server.write_all(b"and goodbye")?;
//! let report = server.close();
//! assert!(report.xenstore_removed);
//! assert_eq!(client.join().unwrap()?, b"and goodbye");
//! # Ok::<(), xen_vchan::VchanError>(())
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi;
mod channel;
mod client;
mod error;
#[cfg(feature = "std")]
mod io;
#[cfg(all(feature = "linux", target_os = "linux"))]
mod linux;
pub mod ring;
mod server;

pub use abi::{Layout, LayoutError};
pub use channel::{CloseReport, Options, Side, Stats, Teardown, Vchan};
pub use client::{ClientConfig, ClientMem, ClientVchan, connect};
pub use error::VchanError;
#[cfg(all(feature = "linux", target_os = "linux"))]
pub use linux::LinuxUnmapNotify;
pub use ring::{Broken, Role};
pub use server::{Listener, ServerConfig, ServerMem, ServerVchan, listen, vchan_path};

use xen_gnttab::{ForeignRef, GrantRef, SharedMem, Writable};
use xen_xenbus::Port;

/// An optional platform capability: when this domain's grant or mapping of the shared page
/// goes away without a clean close (the process died), clear the live byte at `live_offset`
/// and signal `port` (Linux's `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY` and
/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY` with `UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT`).
///
/// The page is given as its reference and its view, so a platform can find its own record
/// (gntalloc's index, gntdev's mapping) by either.
pub trait UnmapNotify: Send + Sync {
    /// Server side: arm it on our grant `gref` of the shared page.
    fn arm_grant(
        &self,
        gref: GrantRef,
        page: SharedMem<'_, Writable>,
        live_offset: usize,
        port: Port,
    ) -> Result<(), VchanError>;
    /// Client side: arm it on our mapping of the server's shared page.
    fn arm_map(
        &self,
        target: ForeignRef,
        page: SharedMem<'_, Writable>,
        live_offset: usize,
        port: Port,
    ) -> Result<(), VchanError>;
}
