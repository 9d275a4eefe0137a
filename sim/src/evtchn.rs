//! Simulated event channels: per-domain port tables, pending and mask bits, per-port
//! notification counters, waits with a timeout, and a storm generator.
//!
//! Each domain has a port table and a page of port words (Xen's `evtchn_pending` and
//! `evtchn_mask` bits, one [`PortWord`] per port). A [`SimEvtchn`] is one open
//! `/dev/xen/evtchn`: the ports bound through it and the queue of ports that fired. A
//! notification raises the remote port's word; a port that fires is queued once and stays
//! masked until [`EventChannels::unmask`], so a storm coalesces into one pending bit.
//!
//! The host-wide state sits behind [`Hub`]; handles call it by (handle, port) only, so a
//! multi-process host could put the port words in shared memory and the table behind a
//! socket.

use crate::{Domain, Host};
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use xen_gnttab::SharedRegion;
use xen_xenbus::evtchn::{Delivery, MASKED, PENDING, PortWord};
use xen_xenbus::{Domid, EventChannels, EvtchnError, Port};

/// Ports per domain (port 0 is reserved, as on Xen).
pub const MAX_PORTS: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Unbound { remote: Domid },
    Interdomain { remote: Domid, rport: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    handle: u64,
    sent: u64,
    received: u64,
    fired: u64,
}

const FREE: Entry = Entry {
    state: State::Free,
    handle: 0,
    sent: 0,
    received: 0,
    fired: 0,
};

/// Counters and bits of one port, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Notifications sent through this port.
    pub sent: u64,
    /// Notifications that arrived on this port (coalesced or not).
    pub received: u64,
    /// Times this port fired (was handed to the reader).
    pub fired: u64,
    /// The pending bit.
    pub pending: bool,
    /// The mask bit.
    pub masked: bool,
    /// Whether the port is bound to a live peer port.
    pub connected: bool,
}

struct DomEv {
    words: SharedRegion,
    ports: Vec<Entry>,
}

impl DomEv {
    fn new() -> Self {
        DomEv {
            words: SharedRegion::new_zeroed(MAX_PORTS as usize * 4),
            ports: vec![FREE; MAX_PORTS as usize],
        }
    }
    fn word(&self, port: u32) -> PortWord<'_> {
        PortWord::new(self.words.mem(), port as usize * 4)
    }
}

struct Handle {
    domid: Domid,
    ready: VecDeque<u32>,
}

#[derive(Default)]
struct Inner {
    doms: HashMap<u16, DomEv>,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
}

/// The host's event channels.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    fired: Condvar,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const GONE: EvtchnError = EvtchnError::Platform("domain destroyed");

impl Inner {
    fn me(&self, h: u64) -> Result<Domid, EvtchnError> {
        let d = self.handles.get(&h).ok_or(GONE)?.domid;
        if self.doms.contains_key(&d.0) {
            Ok(d)
        } else {
            Err(GONE)
        }
    }

    /// The entry of `port`, which must be bound through handle `h`.
    fn own(&mut self, h: u64, port: Port) -> Result<(Domid, &mut Entry), EvtchnError> {
        let d = self.me(h)?;
        let bad = EvtchnError::InvalidPort { port: port.0 };
        let dom = self.doms.get_mut(&d.0).ok_or(GONE)?;
        let e = dom.ports.get_mut(port.0 as usize).ok_or(bad.clone())?;
        if e.state == State::Free || e.handle != h {
            return Err(bad);
        }
        Ok((d, e))
    }

    fn alloc(&mut self, d: Domid, h: u64, state: State) -> Result<u32, EvtchnError> {
        let dom = self.doms.get_mut(&d.0).ok_or(GONE)?;
        let p = (1..MAX_PORTS)
            .find(|&p| dom.ports[p as usize].state == State::Free)
            .ok_or(EvtchnError::NoFreePort)?;
        dom.ports[p as usize] = Entry {
            state,
            handle: h,
            ..FREE
        };
        dom.word(p).reset();
        Ok(p)
    }

    /// Queues `port` of `d` to the handle that owns it.
    fn queue(&mut self, d: Domid, port: u32) -> bool {
        let Some(dom) = self.doms.get_mut(&d.0) else {
            return false;
        };
        let e = &mut dom.ports[port as usize];
        e.fired += 1;
        let h = e.handle;
        match self.handles.get_mut(&h) {
            Some(q) => {
                q.ready.push_back(port);
                true
            }
            None => false,
        }
    }

    /// Closes a port: the peer's end becomes unbound (offered to us again), as
    /// `evtchn_close` does.
    fn close(&mut self, d: Domid, port: u32) {
        let Some(dom) = self.doms.get_mut(&d.0) else {
            return;
        };
        let old = std::mem::replace(&mut dom.ports[port as usize], FREE);
        dom.word(port).mask();
        if let State::Interdomain { remote, rport } = old.state {
            if let Some(r) = self.doms.get_mut(&remote.0) {
                r.ports[rport as usize].state = State::Unbound { remote: d };
            }
        }
        if let Some(q) = self.handles.get_mut(&old.handle) {
            q.ready.retain(|&p| p != port);
        }
    }
}

impl Hub {
    pub(crate) fn add_domain(&self, d: Domid) {
        lock(&self.inner).doms.insert(d.0, DomEv::new());
    }

    /// A destroyed domain's channels close; its peers' ports become unbound (notifications
    /// to them are dropped) and its handles fail.
    pub(crate) fn remove_domain(&self, d: Domid) {
        let mut inner = lock(&self.inner);
        for p in 1..MAX_PORTS {
            inner.close(d, p);
        }
        inner.doms.remove(&d.0);
        drop(inner);
        self.fired.notify_all();
    }

    fn open(&self, d: Domid) -> u64 {
        let mut inner = lock(&self.inner);
        inner.next_handle += 1;
        let h = inner.next_handle;
        inner.handles.insert(
            h,
            Handle {
                domid: d,
                ready: VecDeque::new(),
            },
        );
        h
    }

    fn close_handle(&self, h: u64) {
        let mut inner = lock(&self.inner);
        if let Some(handle) = inner.handles.get(&h) {
            let d = handle.domid;
            let mine: Vec<u32> = inner
                .doms
                .get(&d.0)
                .map(|dom| {
                    (1..MAX_PORTS)
                        .filter(|&p| {
                            let e = &dom.ports[p as usize];
                            e.state != State::Free && e.handle == h
                        })
                        .collect()
                })
                .unwrap_or_default();
            for p in mine {
                inner.close(d, p);
            }
        }
        inner.handles.remove(&h);
    }

    fn alloc_unbound(&self, h: u64, remote: Domid) -> Result<Port, EvtchnError> {
        let mut inner = lock(&self.inner);
        let d = inner.me(h)?;
        if !inner.doms.contains_key(&remote.0) {
            return Err(EvtchnError::NoSuchDomain { domid: remote });
        }
        inner.alloc(d, h, State::Unbound { remote }).map(Port)
    }

    fn bind_interdomain(&self, h: u64, remote: Domid, rport: Port) -> Result<Port, EvtchnError> {
        let mut inner = lock(&self.inner);
        let d = inner.me(h)?;
        let not = EvtchnError::NotBindable {
            domid: remote,
            port: rport.0,
        };
        let r = inner
            .doms
            .get(&remote.0)
            .ok_or(EvtchnError::NoSuchDomain { domid: remote })?;
        let offered = r
            .ports
            .get(rport.0 as usize)
            .is_some_and(|e| rport.0 != 0 && e.state == State::Unbound { remote: d });
        if !offered {
            return Err(not);
        }
        let lp = inner.alloc(
            d,
            h,
            State::Interdomain {
                remote,
                rport: rport.0,
            },
        )?;
        if let Some(r) = inner.doms.get_mut(&remote.0) {
            r.ports[rport.0 as usize].state = State::Interdomain {
                remote: d,
                rport: lp,
            };
        }
        // Xen's evtchn_bind_interdomain marks the new local port pending, so the binder's
        // first event can carry no work: drivers must treat events as hints (seen on real Xen).
        let fire = inner
            .doms
            .get(&d.0)
            .is_some_and(|dom| dom.word(lp).raise() == Delivery::Fire);
        if fire && inner.queue(d, lp) {
            drop(inner);
            self.fired.notify_all();
        }
        Ok(Port(lp))
    }

    fn notify(&self, h: u64, port: Port) -> Result<(), EvtchnError> {
        let mut inner = lock(&self.inner);
        let state = {
            let (_, e) = inner.own(h, port)?;
            e.sent += 1;
            e.state
        };
        let State::Interdomain { remote, rport } = state else {
            // Xen drops a notification on an unbound port.
            return Ok(());
        };
        let Some(r) = inner.doms.get_mut(&remote.0) else {
            return Ok(());
        };
        r.ports[rport as usize].received += 1;
        if r.word(rport).raise() == Delivery::Fire && inner.queue(remote, rport) {
            drop(inner);
            self.fired.notify_all();
        }
        Ok(())
    }

    fn unbind(&self, h: u64, port: Port) -> Result<(), EvtchnError> {
        let mut inner = lock(&self.inner);
        let (d, _) = inner.own(h, port)?;
        inner.close(d, port.0);
        Ok(())
    }

    fn unmask(&self, h: u64, port: Port) -> Result<(), EvtchnError> {
        let mut inner = lock(&self.inner);
        let (d, _) = inner.own(h, port)?;
        let fire = inner
            .doms
            .get(&d.0)
            .is_some_and(|dom| dom.word(port.0).unmask() == Delivery::Fire);
        if fire && inner.queue(d, port.0) {
            drop(inner);
            self.fired.notify_all();
        }
        Ok(())
    }

    fn wait(&self, h: u64, timeout: Duration) -> Result<Option<Port>, EvtchnError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut inner = lock(&self.inner);
        loop {
            inner.me(h)?;
            if let Some(p) = inner.handles.get_mut(&h).and_then(|q| q.ready.pop_front()) {
                return Ok(Some(Port(p)));
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok(None);
            }
            inner = self
                .fired
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Counters and bits of `port` of `domid`.
    pub fn stats(&self, domid: Domid, port: Port) -> Option<PortStats> {
        let inner = lock(&self.inner);
        let dom = inner.doms.get(&domid.0)?;
        let e = dom.ports.get(port.0 as usize)?;
        let bits = dom.word(port.0).bits();
        Some(PortStats {
            sent: e.sent,
            received: e.received,
            fired: e.fired,
            pending: bits & PENDING != 0,
            masked: bits & MASKED != 0,
            connected: matches!(e.state, State::Interdomain { .. }),
        })
    }
}

/// An open `/dev/xen/evtchn` of a simulated domain: the [`EventChannels`] its drivers use.
/// Dropping it closes the ports bound through it.
pub struct SimEvtchn {
    host: Host,
    handle: u64,
    domid: Domid,
}

impl std::fmt::Debug for SimEvtchn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEvtchn")
            .field("domid", &self.domid)
            .field("handle", &self.handle)
            .finish()
    }
}

impl SimEvtchn {
    fn hub(&self) -> &Hub {
        &self.host.inner.evtchn
    }

    /// Counters and bits of one of this domain's ports.
    pub fn stats(&self, port: Port) -> Option<PortStats> {
        self.hub().stats(self.domid, port)
    }

    /// The domain this handle belongs to.
    pub fn domid(&self) -> Domid {
        self.domid
    }
}

impl Drop for SimEvtchn {
    fn drop(&mut self) {
        self.hub().close_handle(self.handle);
    }
}

impl EventChannels for SimEvtchn {
    fn alloc_unbound(&self, remote: Domid) -> Result<Port, EvtchnError> {
        self.hub().alloc_unbound(self.handle, remote)
    }
    fn bind_interdomain(&self, remote: Domid, remote_port: Port) -> Result<Port, EvtchnError> {
        self.hub()
            .bind_interdomain(self.handle, remote, remote_port)
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.hub().notify(self.handle, port)
    }
    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        self.hub().unbind(self.handle, port)
    }
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.hub().unmask(self.handle, port)
    }
    fn poll(&self) -> Result<Option<Port>, EvtchnError> {
        self.hub().wait(self.handle, Duration::ZERO)
    }
    fn wait(&self, timeout: Duration) -> Result<Option<Port>, EvtchnError> {
        self.hub().wait(self.handle, timeout)
    }
}

/// A hostile peer's event storm: `n` notifications on `port`, as fast as they go. Returns
/// how many were sent before the first error (the port closing ends the storm).
pub fn storm(evtchn: &impl EventChannels, port: Port, n: u64) -> u64 {
    let mut sent = 0;
    while sent < n && evtchn.notify(port).is_ok() {
        sent += 1;
    }
    sent
}

impl Domain {
    /// Opens `/dev/xen/evtchn` for this domain.
    pub fn evtchn(&self) -> SimEvtchn {
        let host = self.host().clone();
        let handle = host.inner.evtchn.open(self.domid());
        SimEvtchn {
            host,
            handle,
            domid: self.domid(),
        }
    }
}

impl Host {
    /// Counters and bits of `port` of `domid` (for benchmarks and tests).
    pub fn port_stats(&self, domid: Domid, port: Port) -> Option<PortStats> {
        self.inner.evtchn.stats(domid, port)
    }
}
