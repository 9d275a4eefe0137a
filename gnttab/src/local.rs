//! A self-contained platform with no hypervisor: pages on the heap, a grant table in memory.
//!
//! For examples and drivers' unit tests. Nothing maps its grants unless a test pins entries
//! itself with Xen's half of the v1 protocol (see [`LocalTable::peer_pin`]); the simulator
//! (`xen-sim`) is the faithful host for everything else.
#![allow(unsafe_code)] // `unsafe impl TablePlatform` and the local peer's pins on its table.

use crate::abi::{Domid, Frame, GntStatus, GrantRef, PAGE_SIZE};
use crate::access::Writable;
use crate::error::GrantError;
use crate::grant::Page;
use crate::shared::{SharedMem, SharedRegion};
use crate::table::{GrantTable, TablePlatform};
use crate::v1;
use core::sync::atomic::{AtomicU64, Ordering};

/// A page on the heap with a made-up frame number.
#[derive(Debug)]
pub struct HeapPage {
    mem: SharedRegion,
    frame: Frame,
}

impl HeapPage {
    /// A zeroed page with the given frame number.
    pub fn new(frame: Frame) -> Self {
        HeapPage {
            mem: SharedRegion::new_zeroed(PAGE_SIZE),
            frame,
        }
    }
}

impl Page for HeapPage {
    fn frame(&self) -> Frame {
        self.frame
    }
    fn mem(&self) -> SharedMem<'_, Writable> {
        self.mem.mem()
    }
}

/// The platform behind [`LocalTable`].
#[derive(Debug)]
pub struct LocalPlatform {
    domid: Domid,
    table: SharedRegion,
    next_frame: AtomicU64,
}

// SAFETY: the table is a region this platform allocated and never hands out (only the
// `GrantTable` over it and the local peer's pins below reach it); pages are fresh heap
// regions, each with its own made-up frame number (a counter), so no two pages share a frame.
unsafe impl TablePlatform for LocalPlatform {
    type Page = HeapPage;
    fn domid(&self) -> Domid {
        self.domid
    }
    fn alloc_page(&self) -> Result<HeapPage, GrantError> {
        Ok(HeapPage::new(Frame(
            self.next_frame.fetch_add(1, Ordering::Relaxed),
        )))
    }
    unsafe fn table(&self) -> SharedMem<'_, Writable> {
        self.table.mem()
    }
}

/// A [`GrantTable`] over [`LocalPlatform`].
pub type LocalTable = GrantTable<LocalPlatform>;

impl GrantTable<LocalPlatform> {
    /// A table of `entries` v1 entries (8 of them reserved) for domain `domid`.
    pub fn new_local(domid: Domid, entries: u32) -> Self {
        GrantTable::new(LocalPlatform {
            domid,
            table: SharedRegion::new_zeroed(entries as usize * 8),
            next_frame: AtomicU64::new(0x1000),
        })
    }

    /// Pins `gref` as `peer` would with a map (Xen's `_set_status_v1`), for tests that need a
    /// busy grant without a simulator.
    pub fn peer_pin(&self, gref: GrantRef, peer: Domid, readonly: bool) -> Result<(), GntStatus> {
        // SAFETY: this platform plays the hypervisor for its own table: a pin is what Xen's
        // map does to the entry.
        let table = unsafe { self.platform().table() };
        v1::hypervisor::set_status(table, gref, peer.0, readonly, true, false)
    }

    /// Drops every pin `peer_pin` took on `gref`: the local peer unmaps.
    ///
    /// Nothing outside this process can map a local table's grants (no hypervisor reads it),
    /// so the only pins on its entries are the ones `peer_pin` took for the simulated peer.
    pub fn peer_unpin(&self, gref: GrantRef) {
        // SAFETY: as in `peer_pin`: the local peer's unmap (Xen's `reduce_status_for_pin`),
        // and no other party holds a pin on this table.
        let table = unsafe { self.platform().table() };
        v1::hypervisor::reduce_status(table, gref, true, true)
    }
}
