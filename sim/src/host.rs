//! The host: a registry of domains.

use crate::domain::{Domain, DomainState};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use xen_gnttab::Domid;

#[derive(Default)]
pub(crate) struct HostInner {
    domains: RwLock<BTreeMap<u16, Arc<DomainState>>>,
    next_domid: std::sync::atomic::AtomicU16,
    pub(crate) xenstore: crate::xenstore::Store,
    pub(crate) evtchn: crate::evtchn::Hub,
}

/// A simulated Xen host. Cheap to clone; all clones are the same host.
#[derive(Clone, Default)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u16> = self
            .inner
            .domains
            .read()
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("Host").field("domains", &ids).finish()
    }
}

impl Host {
    /// An empty host. The first domain created is domain 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a domain with the default grant-table size.
    pub fn create_domain(&self, name: &str) -> Domain {
        self.create_domain_with(name, crate::DEFAULT_GRANT_ENTRIES)
    }

    /// Creates a domain whose grant table has `grant_entries` entries (8 of them reserved).
    pub fn create_domain_with(&self, name: &str, grant_entries: u32) -> Domain {
        let id = self
            .inner
            .next_domid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = Arc::new(DomainState::new(Domid(id), name, grant_entries));
        self.inner
            .domains
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, state.clone());
        self.inner.evtchn.add_domain(Domid(id));
        self.inner.xenstore.introduce(Domid(id), name);
        Domain::new(self.clone(), state)
    }

    /// A handle to an existing domain.
    pub fn domain(&self, domid: Domid) -> Option<Domain> {
        self.lookup(domid).map(|s| Domain::new(self.clone(), s))
    }

    pub(crate) fn lookup(&self, domid: Domid) -> Option<Arc<DomainState>> {
        self.inner
            .domains
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&domid.0)
            .cloned()
    }

    /// Destroys a domain as Xen does: every mapping it holds of other domains' grants is
    /// released (their pins drop), and it can no longer map or be mapped. Handles to it that
    /// remain get `GNTST_bad_domain` for foreign operations.
    pub fn destroy_domain(&self, domid: Domid) -> bool {
        let removed = self
            .inner
            .domains
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&domid.0);
        match removed {
            Some(state) => {
                state.release_all_mappings(self);
                self.inner.evtchn.remove_domain(domid);
                self.inner.xenstore.release(domid);
                true
            }
            None => false,
        }
    }

    /// Ids of the live domains.
    pub fn domids(&self) -> Vec<Domid> {
        self.inner
            .domains
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|&d| Domid(d))
            .collect()
    }
}
