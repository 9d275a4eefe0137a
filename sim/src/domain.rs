//! A simulated domain: page memory, its grant table, and Xen's active-grant bookkeeping.

use crate::host::Host;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use xen_gnttab::foreign::check_copy;
use xen_gnttab::v1::hypervisor;
use xen_gnttab::{
    Domid, ForeignMapper, ForeignRef, Frame, GntStatus, GrantError, GrantRef, GrantTable,
    PAGE_SIZE, Page, ReadOnly, SharedMem, SharedRegion, TablePlatform, Writable,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pages a domain owns, by frame number: what the hypervisor can look up to map.
#[derive(Default)]
pub(crate) struct FrameTable {
    frames: Mutex<HashMap<u64, Arc<SharedRegion>>>,
    next: AtomicU64,
}

impl FrameTable {
    fn alloc(self: &Arc<Self>) -> SimPage {
        let frame = Frame(0x10_0000 + self.next.fetch_add(1, Ordering::Relaxed));
        let region = Arc::new(SharedRegion::new_zeroed(PAGE_SIZE));
        lock(&self.frames).insert(frame.0, region.clone());
        SimPage {
            region,
            frame,
            owner: Arc::downgrade(self),
        }
    }

    fn get(&self, frame: u64) -> Option<Arc<SharedRegion>> {
        lock(&self.frames).get(&frame).cloned()
    }

    fn len(&self) -> usize {
        lock(&self.frames).len()
    }
}

/// A page of a simulated domain. Dropping it gives the frame back to the domain; a peer that
/// still maps it keeps the memory alive (as Xen keeps a page reference), never a new owner's.
pub struct SimPage {
    region: Arc<SharedRegion>,
    frame: Frame,
    owner: std::sync::Weak<FrameTable>,
}

impl std::fmt::Debug for SimPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPage")
            .field("frame", &self.frame)
            .finish()
    }
}

impl Page for SimPage {
    fn frame(&self) -> Frame {
        self.frame
    }
    fn mem(&self) -> SharedMem<'_, Writable> {
        self.region.mem()
    }
}

impl Drop for SimPage {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            lock(&owner.frames).remove(&self.frame.0);
        }
    }
}

/// The [`TablePlatform`] of a simulated domain: its table frames and its page allocator.
pub struct SimPlatform {
    domid: Domid,
    table: Arc<SharedRegion>,
    frames: Arc<FrameTable>,
}

// SAFETY: `table` is this domain's table region, which only the `GrantTable` over this
// platform writes on the guest's side (the hypervisor paths below run Xen's half); pages come
// from this domain's frame table, each under a frame number of its own, and the hypervisor
// maps exactly the page registered under the entry's frame.
#[allow(unsafe_code)]
unsafe impl TablePlatform for SimPlatform {
    type Page = SimPage;
    fn domid(&self) -> Domid {
        self.domid
    }
    fn alloc_page(&self) -> Result<SimPage, GrantError> {
        Ok(self.frames.alloc())
    }
    unsafe fn table(&self) -> SharedMem<'_, Writable> {
        self.table.mem()
    }
}

/// The grant table of a simulated domain (the [`xen_gnttab::Grantor`] its drivers use).
pub type SimGrants = GrantTable<SimPlatform>;

/// Xen's `active_grant_entry`: pins on one of this domain's grants.
#[derive(Default, Debug, Clone, Copy)]
struct Active {
    ro: u32,
    rw: u32,
    mapper: u16,
    frame: u64,
}

impl Active {
    fn pins(&self) -> u32 {
        self.ro + self.rw
    }
}

/// One mapping this domain holds of another domain's grant (Xen's maptrack entry).
#[derive(Clone, Copy, Debug)]
struct Track {
    granter: Domid,
    gref: GrantRef,
    readonly: bool,
}

/// Counters of a domain's grant activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainStats {
    /// Successful maps of this domain's grants by others.
    pub mapped: u64,
    /// Refused maps or copies of this domain's grants.
    pub refused: u64,
    /// Grant copies from or to this domain's grants.
    pub copied: u64,
    /// Mappings this domain holds now.
    pub holding: usize,
    /// Pages this domain owns now.
    pub pages: usize,
}

pub(crate) struct DomainState {
    pub(crate) domid: Domid,
    pub(crate) name: String,
    table: Arc<SharedRegion>,
    frames: Arc<FrameTable>,
    grants: SimGrants,
    active: Mutex<HashMap<u32, Active>>,
    maptrack: Mutex<HashMap<u32, Track>>,
    next_handle: AtomicU32,
    mapped: AtomicU64,
    refused: AtomicU64,
    copied: AtomicU64,
}

impl DomainState {
    pub(crate) fn new(domid: Domid, name: &str, entries: u32) -> Self {
        let table = Arc::new(SharedRegion::new_zeroed(entries as usize * 8));
        let frames = Arc::new(FrameTable::default());
        let grants = GrantTable::new(SimPlatform {
            domid,
            table: table.clone(),
            frames: frames.clone(),
        });
        DomainState {
            domid,
            name: name.to_owned(),
            table,
            frames,
            grants,
            active: Mutex::default(),
            maptrack: Mutex::default(),
            next_handle: AtomicU32::new(1),
            mapped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            copied: AtomicU64::new(0),
        }
    }

    fn capacity(&self) -> u32 {
        (self.table.len() / 8) as u32
    }

    /// Pins `gref` for `mapper` as `map_grant_ref` (mapflag) or `acquire_grant_for_copy` does,
    /// and returns the page's memory.
    fn pin(
        &self,
        mapper: Domid,
        gref: GrantRef,
        readonly: bool,
        mapflag: bool,
    ) -> Result<Arc<SharedRegion>, GntStatus> {
        let res = self.pin_inner(mapper, gref, readonly, mapflag);
        if res.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn pin_inner(
        &self,
        mapper: Domid,
        gref: GrantRef,
        readonly: bool,
        mapflag: bool,
    ) -> Result<Arc<SharedRegion>, GntStatus> {
        if gref.0 >= self.capacity() {
            return Err(GntStatus::BadGntref);
        }
        let table = self.table.mem();
        let mut active = lock(&self.active);
        let act = active.entry(gref.0).or_default();
        let pinned = act.pins() > 0;
        if pinned && act.mapper != mapper.0 {
            return Err(GntStatus::GeneralError);
        }
        if !pinned || (!readonly && act.rw == 0) {
            if let Err(e) = hypervisor::set_status(table, gref, mapper.0, readonly, mapflag, pinned)
            {
                if !pinned {
                    active.remove(&gref.0);
                }
                return Err(e);
            }
        }
        let frame = if pinned {
            act.frame
        } else {
            u64::from(table.load_u32(gref.0 as usize * 8 + 4, Ordering::Acquire))
        };
        let Some(region) = self.frames.get(frame) else {
            // Not one of this domain's pages: undo the status bits we may have set.
            if !pinned {
                hypervisor::reduce_status(table, gref, true, true);
                active.remove(&gref.0);
            } else if !readonly && act.rw == 0 {
                hypervisor::reduce_status(table, gref, true, false);
            }
            return Err(GntStatus::BadPage);
        };
        act.mapper = mapper.0;
        act.frame = frame;
        if readonly {
            act.ro += 1;
        } else {
            act.rw += 1;
        }
        Ok(region)
    }

    /// Drops one pin, clearing `GTF_writing`/`GTF_reading` as `reduce_status_for_pin` does.
    fn unpin(&self, gref: GrantRef, readonly: bool) {
        let mut active = lock(&self.active);
        let Some(act) = active.get_mut(&gref.0) else {
            return;
        };
        if readonly {
            act.ro = act.ro.saturating_sub(1);
        } else {
            act.rw = act.rw.saturating_sub(1);
        }
        let (no_writers, no_pins) = (act.rw == 0, act.pins() == 0);
        hypervisor::reduce_status(self.table.mem(), gref, no_writers, no_pins);
        if no_pins {
            active.remove(&gref.0);
        }
    }

    pub(crate) fn release_all_mappings(&self, host: &Host) {
        let tracks: Vec<Track> = lock(&self.maptrack).drain().map(|(_, t)| t).collect();
        for t in tracks {
            if let Some(granter) = host.lookup(t.granter) {
                granter.unpin(t.gref, t.readonly);
            }
        }
    }
}

/// A handle to a simulated domain.
#[derive(Clone)]
pub struct Domain {
    host: Host,
    state: Arc<DomainState>,
    mapper: SimMapper,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("domid", &self.state.domid)
            .field("name", &self.state.name)
            .finish()
    }
}

impl Domain {
    pub(crate) fn new(host: Host, state: Arc<DomainState>) -> Self {
        let mapper = SimMapper {
            host: host.clone(),
            me: state.domid,
            state: state.clone(),
        };
        Domain {
            host,
            state,
            mapper,
        }
    }

    /// This domain's id.
    pub fn domid(&self) -> Domid {
        self.state.domid
    }

    /// This domain's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The host this domain runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// This domain's grant table: the [`xen_gnttab::Grantor`] for its frontends.
    pub fn grants(&self) -> &SimGrants {
        &self.state.grants
    }

    /// This domain's [`ForeignMapper`]: maps and copies other domains' grants.
    pub fn mapper(&self) -> &SimMapper {
        &self.mapper
    }

    /// A hostile peer acting as this domain (maps grants and keeps them).
    pub fn hostile(&self) -> crate::Hostile {
        crate::Hostile::new(self.mapper.clone())
    }

    /// Counters of this domain's grant activity.
    pub fn stats(&self) -> DomainStats {
        DomainStats {
            mapped: self.state.mapped.load(Ordering::Relaxed),
            refused: self.state.refused.load(Ordering::Relaxed),
            copied: self.state.copied.load(Ordering::Relaxed),
            holding: lock(&self.state.maptrack).len(),
            pages: self.state.frames.len(),
        }
    }

    /// The `(flags, domid)` word of one of this domain's grant entries, as the hypervisor
    /// sees it (diagnostics and tests only; drivers have no such query).
    pub fn entry_flags(&self, gref: GrantRef) -> Option<(u16, u16)> {
        (gref.0 < self.state.capacity())
            .then(|| xen_gnttab::v1::read_combo(self.state.table.mem(), gref))
    }

    /// The grant table's raw memory, as a hostile guest could scribble on its own table.
    pub fn grant_table_mem(&self) -> SharedMem<'_, Writable> {
        self.state.table.mem()
    }
}

/// The [`ForeignMapper`] of a simulated domain.
#[derive(Clone)]
pub struct SimMapper {
    host: Host,
    me: Domid,
    state: Arc<DomainState>,
}

impl std::fmt::Debug for SimMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMapper")
            .field("domid", &self.me)
            .finish()
    }
}

/// A live mapping held by a simulated domain.
pub struct SimMapping {
    region: Arc<SharedRegion>,
    handle: u32,
    track: Track,
}

impl std::fmt::Debug for SimMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMapping")
            .field("handle", &self.handle)
            .field("granter", &self.track.granter)
            .field("gref", &self.track.gref)
            .field("readonly", &self.track.readonly)
            .finish()
    }
}

impl SimMapper {
    /// Xen's map: pins `r` for this domain and tracks the mapping under a fresh handle.
    pub(crate) fn map_pinned(
        &self,
        r: ForeignRef,
        readonly: bool,
    ) -> Result<SimMapping, GrantError> {
        let granter = self.granter(r.domid, r.gref, "map")?;
        let region = granter
            .pin(self.me, r.gref, readonly, true)
            .map_err(|status| GrantError::Hypervisor {
                op: "map",
                domid: r.domid,
                gref: r.gref,
                status,
            })?;
        granter.mapped.fetch_add(1, Ordering::Relaxed);
        let handle = self.state.next_handle.fetch_add(1, Ordering::Relaxed);
        let track = Track {
            granter: r.domid,
            gref: r.gref,
            readonly,
        };
        lock(&self.state.maptrack).insert(handle, track);
        Ok(SimMapping {
            region,
            handle,
            track,
        })
    }

    /// Xen's unmap: releases the pin tracked under the mapping's handle.
    pub(crate) fn unmap_pinned(&self, m: SimMapping) -> Result<(), GrantError> {
        let Some(track) = lock(&self.state.maptrack).remove(&m.handle) else {
            // Already released (this domain was destroyed): nothing pinned any more.
            return Err(GrantError::Hypervisor {
                op: "unmap",
                domid: m.track.granter,
                gref: m.track.gref,
                status: GntStatus::BadHandle,
            });
        };
        if let Some(granter) = self.host.lookup(track.granter) {
            granter.unpin(track.gref, track.readonly);
        }
        Ok(())
    }

    fn granter(
        &self,
        domid: Domid,
        gref: GrantRef,
        op: &'static str,
    ) -> Result<Arc<DomainState>, GrantError> {
        let live = self.host.lookup(self.me).is_some();
        match self.host.lookup(domid) {
            Some(g) if live && domid != self.me => Ok(g),
            _ => Err(GrantError::Hypervisor {
                op,
                domid,
                gref,
                status: GntStatus::BadDomain,
            }),
        }
    }

    fn copy(
        &self,
        r: ForeignRef,
        offset: usize,
        len: usize,
        to_foreign: bool,
        f: impl FnOnce(SharedMem<'_, Writable>),
    ) -> Result<(), GrantError> {
        check_copy(offset, len)?;
        let granter = self.granter(r.domid, r.gref, "copy")?;
        let fail = |status| GrantError::Hypervisor {
            op: "copy",
            domid: r.domid,
            gref: r.gref,
            status,
        };
        let region = granter
            .pin(self.me, r.gref, !to_foreign, false)
            .map_err(fail)?;
        f(region.mem().sub(offset, len));
        granter.copied.fetch_add(1, Ordering::Relaxed);
        granter.unpin(r.gref, !to_foreign);
        Ok(())
    }
}

// SAFETY: `map` pins exactly the named entry through Xen's `_set_status_v1` (which refuses a
// writable pin of a read-only grant) and returns the granter's page region, kept alive by the
// mapping's `Arc` until it is dropped; `mapping_mem` is a read-only view of it and
// `mapping_mem_mut` is used only for writable pins (the trait's contract); `unmap` releases
// the pin recorded under the mapping's handle; copies touch only the pinned page, within it.
#[allow(unsafe_code)]
unsafe impl ForeignMapper for SimMapper {
    type Mapping = SimMapping;

    unsafe fn map(&self, r: ForeignRef, readonly: bool) -> Result<SimMapping, GrantError> {
        self.map_pinned(r, readonly)
    }

    fn mapping_mem(m: &SimMapping) -> SharedMem<'_, ReadOnly> {
        m.read_only_mem()
    }

    unsafe fn mapping_mem_mut(m: &SimMapping) -> SharedMem<'_, Writable> {
        m.region.mem()
    }

    unsafe fn unmap(&self, m: SimMapping) -> Result<(), GrantError> {
        self.unmap_pinned(m)
    }

    fn copy_from_foreign(
        &self,
        src: ForeignRef,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), GrantError> {
        let len = dst.len();
        self.copy(src, offset, len, false, |mem| mem.read_bytes(0, dst))
    }

    fn copy_to_foreign(
        &self,
        src: &[u8],
        dst: ForeignRef,
        offset: usize,
    ) -> Result<(), GrantError> {
        self.copy(dst, offset, src.len(), true, |mem| mem.write_bytes(0, src))
    }
}

impl SimMapping {
    pub(crate) fn read_only_mem(&self) -> SharedMem<'_, ReadOnly> {
        self.region.mem().read_only()
    }
    /// The page, writable, for a writable pin only.
    pub(crate) fn writable_mem(&self) -> Option<SharedMem<'_, Writable>> {
        (!self.track.readonly).then(|| self.region.mem())
    }
    pub(crate) fn granter(&self) -> Domid {
        self.track.granter
    }
    pub(crate) fn gref(&self) -> GrantRef {
        self.track.gref
    }
}
