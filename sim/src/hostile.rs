//! Hostile peers: domains that map grants and do not let go, or write where they should not.

use crate::domain::{SimMapper, SimMapping};
use xen_gnttab::{Domid, ForeignRef, GrantError, GrantRef, ReadOnly, SharedMem, Writable};

/// A mapping a hostile peer keeps: dropping it does **not** unmap (the pin stays, as with a
/// backend that never unmaps). Only [`Hostile::release`] lets go.
#[derive(Debug)]
pub struct HeldMapping {
    mapping: Option<SimMapping>,
}

impl HeldMapping {
    /// The mapped page, writable: a hostile peer writes it at will. `None` for a read-only
    /// mapping (the hypervisor gave no write access; see [`HeldMapping::read_only_mem`]).
    pub fn mem(&self) -> Option<SharedMem<'_, Writable>> {
        self.mapping.as_ref().and_then(SimMapping::writable_mem)
    }

    /// The mapped page, read-only (any held mapping can be read).
    pub fn read_only_mem(&self) -> Option<SharedMem<'_, ReadOnly>> {
        self.mapping.as_ref().map(SimMapping::read_only_mem)
    }

    /// Which grant is held.
    pub fn target(&self) -> Option<(Domid, GrantRef)> {
        self.mapping.as_ref().map(|m| (m.granter(), m.gref()))
    }
}

impl Drop for HeldMapping {
    fn drop(&mut self) {
        // The whole point: a hostile peer does not unmap. Keep the pin forever.
        if let Some(m) = self.mapping.take() {
            std::mem::forget(m);
        }
    }
}

/// A hostile domain's toolkit.
#[derive(Debug, Clone)]
pub struct Hostile {
    mapper: SimMapper,
}

impl Hostile {
    pub(crate) fn new(mapper: SimMapper) -> Self {
        Hostile { mapper }
    }

    /// Maps `gref` of `granter` and keeps it mapped (writable unless `readonly`).
    pub fn map_and_hold(
        &self,
        granter: Domid,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<HeldMapping, GrantError> {
        let m = self.mapper.map_pinned(
            ForeignRef {
                domid: granter,
                gref,
            },
            readonly,
        )?;
        Ok(HeldMapping { mapping: Some(m) })
    }

    /// Lets go of a held mapping at last.
    pub fn release(&self, mut held: HeldMapping) -> Result<(), GrantError> {
        match held.mapping.take() {
            Some(m) => self.mapper.unmap_pinned(m),
            None => Ok(()),
        }
    }

    /// Tries every ref in `range` of `granter` and holds whatever maps: a peer guessing refs.
    pub fn map_everything(&self, granter: Domid, range: std::ops::Range<u32>) -> Vec<HeldMapping> {
        range
            .filter_map(|r| self.map_and_hold(granter, GrantRef(r), false).ok())
            .collect()
    }
}
